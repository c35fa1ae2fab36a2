"""Batch runs: decide case files with an audit log, in parallel, resumably, accounting for every case.

Worker processes read nothing and write nothing: the main process reads the inputs in
chunks, workers validate and decide each chunk and build its audit entries, and the main
process — the only writer — appends each chunk's records to the one hash chain and only
then writes the chunk's decisions to the output, in input order.
"""

from __future__ import annotations

import collections
import itertools
import json
import multiprocessing as mp
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from .audit.log import AuditLog, PiiPolicy, make_entry
from .audit.store import case_key, stored_ruleset
from .cases import CaseError
from .compile import Plan, compile as compile_plan
from .decision import Decision, canonical_json
from .inputs import Item, read
from .load import load

MAX_PROBLEMS_KEPT = 50


@dataclass
class Summary:
    """Every case read, and what became of it: read = decided + referred + rejected, always."""

    read: int = 0
    decided: collections.Counter = field(default_factory=collections.Counter)  # by outcome
    referred: collections.Counter = field(default_factory=collections.Counter)  # by (queue, reason)
    rejected: collections.Counter = field(default_factory=collections.Counter)  # by error code
    resumed: int = 0  # already in the log from an interrupted run; not decided again
    problems: list = field(default_factory=list)  # (source, line, code, message), the first few
    seconds: float = 0.0
    # a distributed run: case ids decided in more than one partition, with how often (found after the fact)
    duplicates_across_partitions: list = field(default_factory=list)

    @property
    def n_decided(self) -> int:
        return sum(self.decided.values())

    @property
    def n_referred(self) -> int:
        return sum(self.referred.values())

    @property
    def n_rejected(self) -> int:
        return sum(self.rejected.values())

    def count(self, info: tuple, source: str, line: int) -> None:
        """Count one outcome, given as :func:`outcome_info` describes it."""
        self.read += 1
        status, outcome, queue, reason, code, message = info
        if status == "decided":
            self.decided[outcome] += 1
        elif status == "referred":
            self.referred[(queue, reason)] += 1
        else:
            self.rejected[code] += 1
            if len(self.problems) < MAX_PROBLEMS_KEPT:
                self.problems.append((source, line, code, message))

    def to_state(self) -> dict:
        """Everything counted, as JSON-able data (a partition's summary, kept in the log)."""
        return {"read": self.read, "decided": dict(self.decided),
                "referred": [[q, r, n] for (q, r), n in self.referred.items()], "rejected": dict(self.rejected),
                "resumed": self.resumed, "problems": [list(p) for p in self.problems], "seconds": self.seconds}

    @classmethod
    def from_state(cls, state: dict) -> "Summary":
        return cls(state["read"], collections.Counter(state["decided"]),
                   collections.Counter({(q, r): n for q, r, n in state["referred"]}),
                   collections.Counter(state["rejected"]), state["resumed"],
                   [tuple(p) for p in state["problems"]], state["seconds"])

    def add(self, other: "Summary") -> None:
        """Count another part of the same run (partitions are added in input order)."""
        self.read += other.read
        self.decided.update(other.decided)
        self.referred.update(other.referred)
        self.rejected.update(other.rejected)
        self.resumed += other.resumed
        self.problems = (self.problems + other.problems)[:MAX_PROBLEMS_KEPT]

    def to_dict(self) -> dict:
        rate = self.read / self.seconds if self.seconds else 0.0
        return {
            "read": self.read, "decided": self.n_decided, "referred": self.n_referred, "rejected": self.n_rejected,
            "decided_by_outcome": dict(sorted(self.decided.items())),
            "referred_by_queue_and_reason": [{"queue": q, "reason": r, "count": n}
                                             for (q, r), n in sorted(self.referred.items())],
            "rejected_by_error": dict(sorted(self.rejected.items())),
            "resumed_from_log": self.resumed,
            "automation_rate": round(self.n_decided / self.read, 4) if self.read else 0.0,
            "seconds": round(self.seconds, 3), "cases_per_second": round(rate, 1),
            "problems": [{"source": s, "line": n, "code": c, "message": m} for s, n, c, m in self.problems],
            **({"duplicate_ids_across_partitions": [{"case_id": c, "count": n}
                                                     for c, n in self.duplicates_across_partitions]}
               if self.duplicates_across_partitions else {}),
        }


# -- the work done in worker processes ---------------------------------------------------------

_worker: dict = {}


def _init_worker(ruleset_path: str, pii_mode: str, pii_key: bytes | None) -> None:
    _worker["plan"] = compile_plan(load(ruleset_path))
    _worker["pii"] = PiiPolicy(pii_mode, pii_key)


def malformed(plan: Plan, item: Item) -> Decision:
    """The rejection of a line that could not be read as a case."""
    period = plan._periods[-1]
    error = CaseError("", "malformed_input", item.error or "unreadable")
    return Decision((period.rejected, {"source": item.source, "line": item.line}, None, (error,)))


def outcome_info(decision: Decision) -> tuple:
    """(status, outcome, queue, referral reason, first error code, first error message) for the summary."""
    errors = decision.errors
    if errors:
        e = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return ("rejected", None, None, None, e.code, (f"{e.path}: " if e.path else "") + e.message + more)
    return (decision.status, decision.outcome, decision.queue, decision.referral_reason, None, None)


def decide_chunk(items: list[Item], plan: Plan | None = None, pii: PiiPolicy | None = None) -> list:
    """Decide a chunk of items: for each, its audit entry (whose decision JSON is also the output)
    and its summary info."""
    plan = plan or _worker["plan"]
    pii = pii or _worker["pii"]
    out = []
    for item in items:
        if item.error is not None:
            decision = malformed(plan, item)
            raw = {"source": item.source, "line": item.line, "error": item.error}
        else:
            decision, raw = plan.decide(item.raw), item.raw
        out.append((make_entry(decision, raw, pii), outcome_info(decision)))
    return out


# -- the main process ----------------------------------------------------------------------------

def _chunks(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


class Batch:
    """One run over case files: ``Batch(...).run(out)`` returns the :class:`Summary`."""

    def __init__(self, ruleset_path: str, inputs: list[str], log: AuditLog, *, workers: int = 1,
                 resume: bool = False, chunk_size: int = 1000, fmt: str | None = None,
                 progress: Callable[[int], None] | None = None, pii: tuple[str, bytes | None] = ("keep", None)):
        self.ruleset_path, self.inputs, self.log = ruleset_path, inputs, log
        self.workers, self.resume, self.chunk_size, self.fmt = workers, resume, chunk_size, fmt
        self.progress = progress
        self.pii = pii
        self.plan = compile_plan(load(ruleset_path))
        self.schema = self.plan.ruleset.latest.model.case

    def items(self) -> Iterator[Item]:
        for path in self.inputs:
            yield from read(path, self.schema, self.fmt)

    def run(self, write: Callable[[str], None]) -> Summary:
        summary = Summary()
        started = time.perf_counter()
        store = self.log.store
        self.start_seq = store.head()[0]
        self._stored_rulesets = False
        if self.workers <= 1:
            policy = PiiPolicy(*self.pii)
            for chunk in _chunks(self.items(), self.chunk_size):
                self._commit(chunk, decide_chunk(chunk, self.plan, policy), summary, write)
        else:
            ctx = mp.get_context("fork")
            with ctx.Pool(self.workers, initializer=_init_worker,
                          initargs=(self.ruleset_path, *self.pii)) as pool:
                pending: collections.deque = collections.deque()
                for chunk in _chunks(self.items(), self.chunk_size):
                    pending.append((chunk, pool.apply_async(decide_chunk, (chunk,))))
                    while len(pending) > 2 * self.workers:  # bounded: memory stays flat
                        done_chunk, result = pending.popleft()
                        self._commit(done_chunk, result.get(), summary, write)
                while pending:
                    done_chunk, result = pending.popleft()
                    self._commit(done_chunk, result.get(), summary, write)
        summary.seconds = time.perf_counter() - started
        return summary

    def _commit(self, chunk: list[Item], decided: list, summary: Summary, write: Callable[[str], None]) -> None:
        """Record a decided chunk, then release its decisions: write-ahead, in input order."""
        store = self.log.store
        ids = [e.case_id for e, _ in decided if e.case_id is not None]
        earlier = store.case_records(ids, with_body=self.resume) if ids else []
        this_run = {cid for cid, _, _, seq, _ in earlier if seq > self.start_seq}
        recorded = {(cid, i, r): body for cid, i, r, seq, body in earlier}
        released: list[tuple[str, tuple]] = []
        to_record = []
        seen: set = set()
        for item, (entry, info) in zip(chunk, decided):
            key = case_key(entry.case_id)
            if self.resume and key is not None and (key, entry.input_sha256, entry.ruleset_sha256) in recorded:
                # recorded before an interruption: not decided again; released as recorded
                text = decision_of(recorded[(key, entry.input_sha256, entry.ruleset_sha256)])
                released.append((text, info_of(text)))
                summary.resumed += 1
                seen.add(key)
                continue
            if key is not None and (key in seen or key in this_run):
                entry, info = self._duplicate(item, entry)
            if key is not None:
                seen.add(key)
            to_record.append(entry)
            released.append((entry.decision, info))
        rulesets = [] if self._stored_rulesets else [stored_ruleset(v) for v in self.plan.ruleset.versions]
        store.append(to_record, rulesets)
        self._stored_rulesets = True
        for item, (text, info) in zip(chunk, released):
            write(text)
            summary.count(info, item.source, item.line)
        if self.progress is not None:
            self.progress(len(chunk))

    def _duplicate(self, item: Item, entry) -> tuple:
        return duplicate(self.plan, item, entry, PiiPolicy(*self.pii))


def duplicate(plan: Plan, item: Item, entry, pii: PiiPolicy) -> tuple:
    """A second case with an id already decided in this run: rejected, not decided twice.
    Returns its audit entry and summary info."""
    period = plan._periods[-1]
    field_name = plan.ruleset.latest.model.case_id
    error = CaseError(field_name, "duplicate_case_id",
                      f"case id {entry.case_id} appears more than once in this run; only the first is decided")
    raw = item.raw if item.raw is not None else {}
    decision = Decision((period.rejected, raw, None, (error,)))
    return make_entry(decision, raw, pii), outcome_info(decision)


def decision_of(body: str) -> str:
    """The decision JSON of a stored record body (to release a case recorded earlier)."""
    return canonical_json(json.loads(body)["decision"])


def info_of(text: str) -> tuple:
    """:func:`outcome_info` of a decision JSON."""
    d = json.loads(text)
    errors = d.get("errors") or []
    if d["status"] == "rejected":
        e = errors[0] if errors else {"code": "invalid", "message": "invalid", "path": ""}
        return ("rejected", None, None, None, e["code"], (f"{e['path']}: " if e.get("path") else "") + e["message"])
    return (d["status"], d.get("outcome"), d.get("queue"), (d.get("referral") or {}).get("reason"), None, None)
