"""Running units on ipyparallel engines: start/connect, dispatch, chunking."""

from .cluster import Cluster, ClusterError, ClusterState

__all__ = ["Cluster", "ClusterError", "ClusterState"]
