"""Task functions for the distributed tests, importable by Dask's worker processes."""

from __future__ import annotations

import os

import vedtak.batch.distributed as distributed
from vedtak.batch.distributed import DistributedRun, run_partition


def fail_partition_1(task: dict) -> dict:
    """A worker task whose partition 1 always fails (a disk error, say); the others run normally."""
    if task["partition"]["index"] == 1:
        raise OSError("injected failure: the input disk is unreadable")
    return run_partition(task)


class InProcessRun(DistributedRun):
    """A distributed run whose partitions run one after another in this process (no cluster); a
    partition whose task raises is reported as failed, as the cluster reports it."""

    def _execute(self, run_id, parts):
        if self.out_dir:
            os.makedirs(self.out_dir, exist_ok=True)
        states, failed = {}, {}
        for part, task in zip(parts, self._tasks(run_id, parts)):
            try:
                states[part.index] = self.task(task)
            except Exception as exc:  # noqa: BLE001 - as the cluster: a failed partition is reported
                failed[part.index] = f"{type(exc).__name__}: {exc}"
        return states, failed


def stop_after_first_block(task: dict) -> dict:
    """A worker task that records its partition's first chunk, then fails (a disk error, say)."""
    real = distributed.decide_block
    calls = []

    def once(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise OSError("injected failure after the first chunk")
        return real(*args, **kwargs)

    distributed.decide_block = once
    try:
        return distributed.run_partition(task)
    finally:
        distributed.decide_block = real


def fail_at_once(task: dict) -> dict:
    """A worker task that fails before recording anything."""
    raise OSError("injected failure before the first chunk")
