"""Running units on ipyparallel engines: start/connect, dispatch, chunking."""

from .cluster import Cluster, ClusterState
from .errors import ClusterError, ClusterStopped, ControllerLost, EngineUnfit

__all__ = ["Cluster", "ClusterError", "ClusterState", "ClusterStopped", "ControllerLost", "EngineUnfit"]
