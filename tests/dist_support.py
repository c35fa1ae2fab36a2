"""Task functions for the distributed tests, importable by Dask's worker processes."""

from __future__ import annotations

from vedtak.distributed import run_partition


def fail_partition_1(task: dict) -> dict:
    """A worker task whose partition 1 always fails (a disk error, say); the others run normally."""
    if task["partition"]["index"] == 1:
        raise OSError("injected failure: the input disk is unreadable")
    return run_partition(task)
