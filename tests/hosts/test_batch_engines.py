"""Engines from a batch system and from MPI, through ipyparallel's own launchers, with only
the ``Cluster`` line changed: Slurm puts them on its compute node (another host, which cannot
read the client's files), MPI makes them the ranks of one ``mpiexec`` job."""

from __future__ import annotations

import time

import nbtasks as nt


def cube(x):
    return x ** 3


def rank_and_size(_):
    from mpi4py import MPI

    return MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()


def test_slurm_engines_run_a_parallel_task_on_the_compute_node(slurm):
    with nt.Cluster(n=2, engines="slurm", config=slurm.launcher_config()) as cluster:
        assert repr(cluster).startswith("<nbtasks.Cluster slurm running, 2/2 engines")
        assert nt.ParallelTask(cube, collect=sum).run(range(20), cluster=cluster, progress=False,
                                                      timeout=60) == sum(x ** 3 for x in range(20))
        assert {row["host"] for row in cluster.engines_status()} == {slurm.node.name}
        assert len(slurm.jobs()) == 1
    deadline = time.monotonic() + 20  # stop() cancelled the engines' job
    while slurm.jobs() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert slurm.jobs() == []


def test_mpi_engines_are_the_ranks_of_one_job(mpi):
    with nt.Cluster(n=2, engines="mpi") as cluster:
        assert repr(cluster).startswith("<nbtasks.Cluster mpi running, 2/2 engines")
        seen = nt.ParallelTask(rank_and_size).run(range(8), cluster=cluster, progress=False, timeout=60)
        assert set(seen) == {(0, 2), (1, 2)}
