"""Distributed runs: `vedtak run --executor dask` — partitions decided on a Dask cluster.

The driver cuts the input files into partitions (byte ranges of JSON Lines files, record
ranges of CSV files, whole JSON array files) and sends each worker a description of its
partition, never case data: the worker reads its range itself. One hash chain serialised
through one head cannot scale out, so each partition appends to a chain of its own in the
shared audit log (PostgreSQL for a real cluster); when every partition is complete the
driver appends a manifest record to the main chain that commits to each partition chain's
head hash and record count, so a missing or altered partition is detected by ``verify``.
A worker builds each chunk into a finished block of version 2 records as the local
executor's workers do (engine/batch/runner.py ``decide_block``) and appends it to its chain whole.

A partition is idempotent: its chain records exactly its first N cases, in input order, so
an attempt that is retried (a worker died, a task failed) releases those N as recorded and
decides only the rest (read from the chain's version 1 rows, which an earlier release wrote,
and its blocks); a second attempt running at the same time cannot write (see
:class:`~vedtak.audit.store.ChainConflict`). A run that cannot finish names its missing
partitions; ``--resume`` runs only those.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..audit.log import PiiPolicy, as_released, open_store
from ..audit.block_store import records_of
from ..audit.record import AuditRecordV1, Entry, sha256
from ..audit.store import AuditStore, case_key, stored_ruleset
from .runner import Chunk, Summary, already_decided, decide_block, decide_chunk, duplicate, info_of
from ..evaluation.compile import Plan
from ..evaluation.compile import compile as compile_plan
from ..evaluation.decision import ENGINE_VERSION, canonical_json
from .input_limits import Limits
from .inputs import Partition, partitions, read_partition
from ..language.load import load, load_sources

DEFAULT_PARTITION_BYTES = 32 * 1024 * 1024


class IncompleteRun(Exception):
    """Some partitions could not be completed; the run can be finished with ``--resume``."""

    def __init__(self, run_id: str, missing: list[tuple[Partition, str]], summary: Summary):
        self.run_id, self.missing, self.summary = run_id, missing, summary
        super().__init__(f"run {run_id}: {len(missing)} partition{'s' if len(missing) != 1 else ''} not completed")


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def chain_name(run_id: str, index: int) -> str:
    return f"{run_id}/{index:05d}"


def output_name(index: int) -> str:
    return f"part-{index:05d}.jsonl"


# -- in a worker ---------------------------------------------------------------------------------

_plans: dict[tuple[str, ...], Plan] = {}


def _plan(store: AuditStore, shas: tuple[str, ...], name: str) -> Plan:
    """The run's plan, compiled from the ruleset sources its driver stored in the log (once per process)."""
    if shas not in _plans:
        sources = []
        for sha in shas:
            stored = store.ruleset(sha)
            if stored is None:
                raise RuntimeError(f"the ruleset version {sha[:12]} is not stored in the audit log")
            sources.append((stored.path, stored.source))
        _plans[shas] = compile_plan(load_sources(sources, name))
    return _plans[shas]


def run_partition(task: dict) -> dict:
    """Decide one partition into its chain (and output file); returns its summary state.

    Runs on a Dask worker; everything it needs is in ``task`` or in the audit log.
    """
    part = Partition.from_dict(task["partition"])
    chain = task["chain"]
    store = open_store(task["audit"], timeout=task.get("lock_timeout", 60.0))
    try:
        info = store.chain(chain)
        if info is None:
            raise RuntimeError(f"the audit log has no partition chain {chain}")
        if info.done is not None:  # completed by an earlier attempt
            return json.loads(info.done)
        started = time.perf_counter()
        plan = _plan(store, tuple(task["rulesets"]), task["ruleset_name"])
        pii = PiiPolicy(task["pii"], bytes.fromhex(task["pii_key"]) if task["pii_key"] else None)
        summary = Summary()
        out = Path(task["out"]) / output_name(part.index) if task["out"] else None
        partial = out.with_suffix(".partial") if out else None
        sink = open(partial, "wb") if partial else None
        try:
            def write_text(text: str | bytes) -> None:  # a chunk's output: UTF-8 bytes, or text
                if sink is not None:
                    sink.write(text if text.__class__ is bytes else text.encode("utf-8"))

            def write(line: str) -> None:
                write_text(line + "\n")

            items = read_partition(part, plan.ruleset.latest.model.case, Limits.from_dict(task.get("limits")))
            seq, seen = info.seq, set()
            if seq:  # an earlier attempt recorded the first `seq` cases: release them as recorded
                with contextlib.closing(_recorded(store, chain)) as records:
                    for item, record in zip(itertools.islice(items, seq), records):
                        text = record.decision
                        if record.pii is not None and '"masked":' in record.pii:
                            # the log keeps it masked: release it as decided
                            text = as_released(text, decide_chunk([item], plan, pii)[0][0])
                        write(text)
                        summary.count(info_of(text), item.source, item.line)
                        summary.resumed += 1
                        key = case_key(record.case_id)
                        if key is not None:
                            seen.add(key)
            options = (bool(task.get("keep_released")), task.get("codec") or "none")
            store.keep_released, store.codec = options
            own = chain.rsplit("/", 1)[0] + "/"
            while chunk := list(itertools.islice(items, task["chunk_size"])):
                decided = decide_block(chunk, plan, pii, options)  # its block of records built here
                built: list = []
                prepare = _settler(plan, pii, own, chunk, decided, seen, built)
                store.append_to_chain(chain, expect_seq=seq, prepare=prepare)  # recorded, then released
                n, output, part_summary, added = built
                seq += n
                seen.update(added)
                write_text(output)  # as decided: the log's copy may be masked
                summary.add(part_summary)
        finally:
            if sink:
                sink.close()
        if out and partial:
            os.replace(partial, out)
        summary.seconds = time.perf_counter() - started
        state = summary.to_state()
        store.finish_chain(chain, json.dumps(state, sort_keys=True))
        return state
    finally:
        store.close()


def _recorded(store: AuditStore, chain: str) -> Iterator:
    """A partition chain's records in order: version 1 rows (written by an earlier release), then
    blocks. The blocks are read first, whole: rendering a record may read the log again."""
    rows = store.chain_rows(chain)
    try:
        for row in rows:
            yield AuditRecordV1.from_body(row[6], row[8])
    finally:
        rows.close()
    for block in list(store.blocks(chain)):
        yield from records_of(block, store)


def _settler(plan: Plan, pii: PiiPolicy, own_chains: str, chunk: list, decided: Chunk, seen: set, built: list):
    """What a partition records of a decided chunk, read inside its append: a case id repeated within
    the partition is a duplicate_case_id rejection (as in a local run), and one this ruleset already
    decided or referred in the log outside this run (an earlier run) an already_decided rejection.
    When neither occurs (the rule) the block the chunk was built into is recorded as it is; else
    the chunk's entries are settled case by case. Fills ``built`` with [records appended, output
    text, summary, the chunk's case keys]."""
    def prepare(store: AuditStore) -> tuple:
        keys = [k for k in decided.block.keys() if k is not None]
        earlier = {r.key: r for r in (store.prior_records_by_key(keys, plan.id) if keys else [])
                   if r.kind in ("decision", "referral") and not (r.chain or "").startswith(own_chains)}
        if not earlier and not decided.repeats and seen.isdisjoint(keys):
            built[:] = [len(decided), decided.output, decided.summary, keys]
            return [], None, decided.block
        settled = list(zip(decided.entries, decided.infos)) if decided.entries is not None \
            else decide_chunk(chunk, plan, pii)
        entries, out, added, summary = [], [], set(), Summary()
        for item, (entry, outcome) in zip(chunk, settled):
            key = case_key(entry.case_id)
            if key is not None and (key in seen or key in added):  # as a local run: the first one is decided
                entry, outcome = duplicate(plan, item, entry, pii)
            elif key is not None and key in earlier:
                entry, outcome = already_decided(plan, item, entry, earlier[key], pii)
            if key is not None:
                added.add(key)
            entries.append(entry)
            out.append((entry.released or entry.decision) + "\n")  # as decided: the log's copy may be masked
            summary.count(outcome, item.source, item.line)
        built[:] = [len(entries), "".join(out), summary, added]
        return entries, None
    return prepare


# -- the driver ----------------------------------------------------------------------------------

@dataclass
class RunInfo:
    """What the driver reports beside the summary."""

    run_id: str = ""
    resumed_run: bool = False
    partitions: int = 0
    partitions_done_before: int = 0
    manifest_seq: int | None = None


class DistributedRun:
    """One `vedtak run --executor dask`: ``DistributedRun(...).run()`` returns the :class:`Summary`."""

    def __init__(self, ruleset_path: str, inputs: list[str], audit: str, *, out_dir: str | None = None,
                 workers: int = 2, scheduler: str | None = None, resume: bool = False, chunk_size: int = 1000,
                 partition_bytes: int = DEFAULT_PARTITION_BYTES, fmt: str | None = None,
                 pii: tuple[str, bytes | None] = ("keep", None), retries: int = 3,
                 progress: Callable[[int, int], None] | None = None, task: Callable[[dict], dict] = run_partition,
                 limits: Limits | None = None, lock_timeout: float = 60.0, keep_released: bool = False,
                 codec: str = "none"):
        self.ruleset_path, self.inputs = ruleset_path, inputs
        # how partition chains store their blocks: every record's full released JSON too; compression
        self.keep_released, self.codec = keep_released, codec
        self.lock_timeout = lock_timeout  # seconds a write waits for another writer's lock on the log
        self.audit = audit if audit.startswith(("postgresql://", "postgres://")) else os.path.abspath(audit)
        self.out_dir = os.path.abspath(out_dir) if out_dir else None
        self.workers, self.scheduler, self.resume = workers, scheduler, resume
        self.chunk_size, self.partition_bytes, self.fmt = chunk_size, partition_bytes, fmt
        self.pii, self.retries, self.progress = pii, retries, progress
        self.task = task  # what a worker runs per partition (replaceable, for fault-injection tests)
        self.limits = limits or Limits()
        self.plan = compile_plan(load(ruleset_path))
        self.info = RunInfo()

    def _spec(self, parts: list[Partition]) -> tuple[str, dict]:
        versions = [{"version": v.version, "sha256": v.sha256} for v in self.plan.ruleset.versions]
        spec = {"ruleset": {"id": self.plan.id, "versions": versions},
                "inputs": [{"source": p, "bytes": os.path.getsize(p)} for p in self.inputs],
                "partitions": [{k: v for k, v in p.to_dict().items() if k not in ("path", "header")} for p in parts],
                "pii": self.pii[0], "format": self.fmt}
        return sha256(canonical_json(spec)), spec

    def run(self) -> Summary:
        started = time.perf_counter()
        parts = partitions(self.inputs, self.fmt, self.partition_bytes)
        run_key, spec = self._spec(parts)
        store = open_store(self.audit, timeout=self.lock_timeout)
        try:
            run_id = store.unfinished_run(run_key) if self.resume else None
            if run_id is None:
                run_id = "run-" + time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:8]
                spec["run_id"] = run_id
                store.start_run(run_id, run_key, canonical_json(spec),
                                [(chain_name(run_id, p.index), p.index, canonical_json(p.to_dict())) for p in parts],
                                [stored_ruleset(v) for v in self.plan.ruleset.versions])
            else:
                self.info.resumed_run = True
            self.info.run_id, self.info.partitions = run_id, len(parts)
            chains = {c.part: c for c in store.chains(run_id)}
        finally:
            store.close()
        self.info.partitions_done_before = sum(1 for c in chains.values() if c.done is not None)
        states, failed = self._execute(run_id, parts)
        summary = Summary()
        for index in sorted(states):
            summary.add(Summary.from_state(states[index]))
        if failed:
            summary.seconds = time.perf_counter() - started
            raise IncompleteRun(run_id, [(parts[i], why) for i, why in sorted(failed.items())], summary)
        store = open_store(self.audit, timeout=self.lock_timeout)
        try:
            self.info.manifest_seq = self._finish(store, run_id, spec, summary)
            summary.duplicates_across_partitions = store.duplicate_cases(run_id)
        finally:
            store.close()
        summary.seconds = time.perf_counter() - started
        return summary

    def _tasks(self, run_id: str, parts: list[Partition]) -> list[dict]:
        key = self.pii[1]
        return [{"partition": p.to_dict(), "chain": chain_name(run_id, p.index), "audit": self.audit,
                 "rulesets": [v.sha256 for v in self.plan.ruleset.versions], "ruleset_name": self.plan.ruleset.path,
                 "pii": self.pii[0], "pii_key": key.hex() if key else None, "out": self.out_dir,
                 "chunk_size": self.chunk_size, "limits": self.limits.to_dict(), "lock_timeout": self.lock_timeout,
                 "keep_released": self.keep_released, "codec": self.codec}
                for p in parts]

    def _execute(self, run_id: str, parts: list[Partition]) -> tuple[dict[int, dict], dict[int, str]]:
        """Run every partition on the cluster; (summary state by partition, why by failed partition)."""
        from dask.distributed import Client, LocalCluster, as_completed

        if self.out_dir:
            os.makedirs(self.out_dir, exist_ok=True)
        cluster = None
        if self.scheduler:
            client = Client(self.scheduler, timeout="30s")
        else:
            # Ctrl-C reaches the whole process group: the worker processes started here inherit an
            # ignored SIGINT, so that only this process stops the run (and then the cluster)
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if _main_thread() else None
            try:
                # the cluster's own log lines stay quiet (a worker's heartbeat error while an interrupted
                # run shuts the cluster down is not news): failed partitions are reported by the driver
                cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=logging.CRITICAL)
            finally:
                if previous is not None:
                    signal.signal(signal.SIGINT, previous)
            client = Client(cluster)
        states: dict[int, dict] = {}
        failed: dict[int, str] = {}
        try:
            futures = {client.submit(self.task, task, key=f"vedtak-{task['chain']}", retries=self.retries,
                                     pure=False): task["partition"]["index"] for task in self._tasks(run_id, parts)}
            for future in as_completed(futures):
                index = futures[future]
                try:
                    states[index] = future.result()
                except Exception as exc:  # noqa: BLE001 - a failed partition is reported, not fatal
                    failed[index] = f"{type(exc).__name__}: {exc}"
                if self.progress is not None:
                    self.progress(states[index]["read"] if index in states else 0, 1)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
        return states, failed

    def _finish(self, store: AuditStore, run_id: str, spec: dict, summary: Summary) -> int:
        """Append the run's manifest to the main chain: it commits to every partition chain's head."""
        chains = store.chains(run_id)
        spec = dict(spec, run_id=run_id)
        # the manifest commits to every row of the run: its registration and each chain's spec and summary
        (run_key, started_at), = [(r[1], r[3]) for r in store.run_rows() if r[0] == run_id]
        manifest = {"run_id": run_id, "run_key": run_key, "started_at": started_at,
                    "chains": [{"chain": c.chain, "partition": c.part, "records": c.seq, "head": c.hash,
                                "spec": c.spec, "done": c.done} for c in chains],
                    "summary": {"read": summary.read, "decided": summary.n_decided, "referred": summary.n_referred,
                                "rejected": summary.n_rejected}}
        entry = Entry("manifest", None, canonical_json(spec), canonical_json(manifest), None, None, None, None,
                      ENGINE_VERSION)
        return store.finish_run(run_id, entry)
