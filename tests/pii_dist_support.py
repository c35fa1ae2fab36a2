"""A worker task for the pii resume test, importable by Dask's worker processes."""

from __future__ import annotations

import vedtak.distributed as distributed


def stop_after_first_chunk(task: dict) -> dict:
    """A worker task that records partition 0's first chunk, then fails (a disk error, say),
    leaving the partition's chain part-done for --resume to finish."""
    if task["partition"]["index"] != 0:
        return distributed.run_partition(task)
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
