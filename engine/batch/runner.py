"""Batch runs: decide case files with an audit log, in parallel, resumably, accounting for every case.

Worker processes read nothing and write nothing: the main process reads the inputs in
chunks, workers validate and decide each chunk and build its audit entries, and the main
process — the only writer — appends each chunk's records to the one hash chain and only
then writes the chunk's decisions to the output, in input order.
"""

from __future__ import annotations

import bisect
import hashlib
import collections
import dataclasses
import itertools
import json
import contextlib
import multiprocessing as mp
import multiprocessing.pool
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from ..audit.log import AuditLog, PiiPolicy, as_released, make_entry, work_item
from ..audit.store import AuditStore, PriorRecord, StoreError, case_key, stored_ruleset
from ..evaluation.cases import CaseError
from ..evaluation.compile import Plan, compile as compile_plan
from ..evaluation.decision import Decision, canonical_json
from .input_limits import WIDEST, Limits
from .json_text import parse_json
from .inputs import Item, Partition, detect_format, partitions, read, read_partition
from ..audit.block_store import EntryBlock, freeze
from ..audit.blocks import meta_and_input
from ..audit.compact import item_digest
from ..language.load import load

MAX_PROBLEMS_KEPT = 50
GROUP_CHUNKS = 16  # chunks committed together at most (one fsync), while more are ready


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
    redecided: int = 0  # decided again (redecide): each new record names the one it supersedes

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
                "resumed": self.resumed, "problems": [list(p) for p in self.problems], "seconds": self.seconds,
                "redecided": self.redecided}

    @classmethod
    def from_state(cls, state: dict) -> "Summary":
        return cls(state["read"], collections.Counter(state["decided"]),
                   collections.Counter({(q, r): n for q, r, n in state["referred"]}),
                   collections.Counter(state["rejected"]), state["resumed"],
                   [tuple(p) for p in state["problems"]], state["seconds"], redecided=state.get("redecided", 0))

    def add(self, other: "Summary") -> None:
        """Count another part of the same run (partitions are added in input order)."""
        self.read += other.read
        self.decided.update(other.decided)
        self.referred.update(other.referred)
        self.rejected.update(other.rejected)
        self.resumed += other.resumed
        self.redecided += other.redecided
        self.problems = (self.problems + other.problems)[:MAX_PROBLEMS_KEPT]

    def to_dict(self) -> dict:
        rate = self.read / self.seconds if self.seconds else 0.0
        return {
            "read": self.read, "decided": self.n_decided, "referred": self.n_referred, "rejected": self.n_rejected,
            "decided_by_outcome": dict(sorted(self.decided.items())),
            "referred_by_queue_and_reason": [{"queue": q, "reason": r, "count": n}
                                             for (q, r), n in sorted(self.referred.items())],
            "rejected_by_error": dict(sorted(self.rejected.items())),
            "resumed_from_log": self.resumed, "redecided": self.redecided,
            "automation_rate": round(self.n_decided / self.read, 4) if self.read else 0.0,
            "seconds": round(self.seconds, 3), "cases_per_second": round(rate, 1),
            "problems": [{"source": s, "line": n, "code": c, "message": m} for s, n, c, m in self.problems],
            **({"duplicate_ids_across_partitions": [{"case_id": c, "count": n}
                                                     for c, n in self.duplicates_across_partitions]}
               if self.duplicates_across_partitions else {}),
        }


# -- the work done in worker processes ---------------------------------------------------------

_worker: dict = {}


def _init_worker(ruleset_path: str, pii_mode: str, pii_key: bytes | None, ending=None) -> None:
    # Ctrl-C reaches the whole process group: the main process stops the run between two chunks
    # and ends the workers itself, so a worker must not die of it halfway through a chunk. So with
    # a SIGTERM sent to the group (kill -TERM -PGID, a service manager): a worker that died of it
    # while holding one of the pool's queue locks would leave the main process waiting forever.
    # SIGTERM ends a worker only once the main process has set ``ending`` (the pool ends its
    # workers with SIGTERM), and then as the default action does: at once and quietly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def on_term(signum, frame) -> None:
        if ending is None or ending.value:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
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


class Chunk:
    """A decided chunk as a worker sends it to the writer: a few large values, no per-case objects —
    its block of records (digests, inner chain and index built), the released decisions as one
    text, and the chunk's summary. The audit entries stay behind (the writer rebuilds them from
    the records in the rare chunk where a case decided before or a repeated case id changes
    what is recorded), except when the log masks personal data: then the records do not hold
    what rebuilding needs, and the entries travel too."""

    __slots__ = ("source", "lines", "block", "output", "summary", "repeats", "entries", "infos", "items")

    def __init__(self, source, lines, block, output, summary, repeats, entries=None, infos=None, items=None):
        self.source, self.lines, self.block, self.output, self.summary = source, lines, block, output, summary
        self.repeats, self.entries, self.infos, self.items = repeats, entries, infos, items

    def __getstate__(self):
        return (self.source, self.lines, self.block, self.output, self.summary, self.repeats, self.entries,
                self.infos, self.items)

    def __setstate__(self, state) -> None:
        (self.source, self.lines, self.block, self.output, self.summary, self.repeats, self.entries, self.infos,
         self.items) = state

    def __len__(self) -> int:
        return len(self.block)


def decide_block(items: list[Item], plan: Plan | None = None, pii: PiiPolicy | None = None,
                 options: tuple = (False, "none"), *, lean: bool = True) -> Chunk:
    """Decide a chunk and build its block of records (digests, inner chain, index rows): what the
    writer needs to link and commit it. ``options``: (keep released JSON, block codec)."""
    pii = pii or _worker["pii"]
    keep_released, codec = options
    if lean and pii.mode == "keep" and not keep_released:
        return _fast_block(items, plan or _worker["plan"], pii, codec)
    decided = decide_chunk(items, plan, pii)
    block = EntryBlock(keep_released)
    summary = Summary()
    for item, (entry, info) in zip(items, decided):
        block.add_entry(entry)
        summary.count(info, item.source, item.line)
    keys = [k for k in block.case_keys if k is not None]
    output = "".join([(e.released or e.decision) + "\n" for e, _ in decided]).encode("utf-8")
    source = items[0].source if items else ""
    keep = not lean or pii.mode != "keep"
    send_items = not lean or any(item.source != source or (item.text is None and item.error is None) for item in items)
    return Chunk(source, [item.line for item in items], freeze(block, codec), output, summary,
                 len(set(keys)) != len(keys), [e for e, _ in decided] if keep else None,
                 [info for _, info in decided] if keep else None, items if send_items else None)


def _fast_block(items: list[Item], plan: Plan, pii: PiiPolicy, codec: str, decisions: list | None = None) -> Chunk:
    """:func:`decide_block` for the common case — lines kept as read, no personal-data masking —
    without building audit entries: each record's meta is put together from its outcome's
    constant part and the values and case id its decision JSON already encodes. Anything else
    (a rejection, a missing-data referral, a CSV row) takes the general path, case by case.
    ``decisions``, if given, receives each case's Decision (a library caller's batch)."""
    block = EntryBlock(False)
    block.entries = None
    work: list = []
    summary = Summary()
    out: list[bytes] = []
    records, digests, keys, kinds, rulesets = block.records, block.digests, block.case_keys, block.kinds, block.rulesets
    link = block.link
    sha256 = hashlib.sha256
    decided_count, referred_count = summary.decided, summary.referred
    general = (None, "rule", "automation-policy")
    constant: dict = {}  # per outcome: (kind code, meta head, meta members, referred)
    for item in items:
        text_in = item.text
        if item.error is None and text_in is not None:
            decision = plan.decide(item.raw)
            if decisions is not None:
                decisions.append(decision)
            o = decision._outcome
            found = constant.get(o)
            if found is None and o.status != "rejected" and o.referral in general:
                sha = o.period.version.sha256
                if sha not in rulesets:
                    rulesets.append(sha)
                n = rulesets.index(sha)
                code = "d" if o.status == "decided" else "r"
                found = constant[o] = (code, '{"' + code.upper() + '":',
                                       (',"n":' + str(n) if n else "") + _compact_constant(o), code == "r")
            if found is not None:
                code, head, fields, referred = found
                released = decision.to_json()
                i = released.find('"case_id":') + 10
                cid = released[i:released.find(',"decision_date":', i)]
                values = released[released.rfind('"values":') + 9:-1]
                if referred:
                    opened = work_item(decision, o.period.version)
                    work.append((len(records), opened))
                    meta = head + cid + fields + ',"i":"' + item_digest(opened[2]) + '"'
                    referred_count[(o.queue, o.referral)] += 1
                else:
                    meta = head + cid + fields
                    decided_count[o.outcome] += 1
                if values != "{}":
                    meta += ',"v":' + values
                data = released.encode("utf-8")
                record = (meta + "}\n" + text_in).encode("utf-8")
                released_sha = sha256(data).digest()
                leaf = sha256(released_sha + record).digest()
                link = sha256(link + leaf).digest()
                digests += released_sha + leaf[:4] + link[:4]
                records.append(record)
                keys.append(None if cid == "null" else cid if cid[0] != '"' else
                            json.dumps(json.loads(cid), ensure_ascii=False))
                kinds.append(code)
                out.append(data)
                summary.read += 1
                continue
            block.link = link
            entry = make_entry(decision, item.raw, pii, text_in)
            info = outcome_info(decision)
        else:
            (entry, info), = decide_chunk([item], plan, pii)
            if decisions is not None:
                decisions.append(None)  # a library caller's items are always read
            block.link = link
        block.add(*block.record_of(entry))
        link = block.link
        if entry.work_item is not None:
            work.append((len(block) - 1, entry.work_item))
        out.append((entry.released or entry.decision).encode("utf-8"))
        summary.count(info, item.source, item.line)
    block.link = link
    block.work = work
    keys = [k for k in block.case_keys if k is not None]
    source = items[0].source if items else ""
    send_items = any(item.source != source or (item.text is None and item.error is None) for item in items)
    return Chunk(source, [item.line for item in items], freeze(block, codec), b"\n".join(out) + b"\n" if out else b"",
                 summary, len(set(keys)) != len(keys), None, None, items if send_items else None)


_COMPACT: dict = {}


def _compact_constant(o) -> str:
    """The members of a compact meta that are the same for every decision of one outcome."""
    found = _COMPACT.get(id(o))
    if found is None or found[0] is not o:
        parts = []
        if o.outcome is not None and o.status != "decided":  # a decision's rule gives its outcome
            parts.append('"o":' + json.dumps(o.outcome, ensure_ascii=False))
        if o.queue is not None:
            parts.append('"q":' + json.dumps(o.queue, ensure_ascii=False))
        if o.rule is not None:
            parts.append('"r":' + json.dumps(o.rule.id, ensure_ascii=False))
        if o.referral is not None:
            parts.append('"w":' + json.dumps(o.referral, ensure_ascii=False))
        found = _COMPACT[id(o)] = (o, "".join("," + p for p in parts))
    return found[1]


def decide_part(part: dict, limits: dict | None, options: tuple = (False, "none")) -> Chunk:
    """Read one byte range of an input file (a worker reads its own), decide it, build its block."""
    plan = _worker["plan"]
    items = list(read_partition(Partition.from_dict(part), plan.ruleset.latest.model.case,
                                Limits.from_dict(limits)))
    return decide_block(items, plan, _worker["pii"], options)


def decide_items(items: list[Item], options: tuple = (False, "none")) -> Chunk:
    return decide_block(items, _worker["plan"], _worker["pii"], options)


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
        out.append((make_entry(decision, raw, pii, item.text), outcome_info(decision)))
    return out


# -- the main process ----------------------------------------------------------------------------

def _line_ranges(path: str, lines: int) -> Iterator[dict]:
    """A JSON Lines file as byte ranges of ``lines`` lines each (the last one shorter), as partitions
    that workers read themselves; only line ends are looked for here, as the run goes (the workers
    start on the first range at once)."""
    full = os.path.abspath(path)
    size = os.path.getsize(full)
    index = 0
    start, line, pos, count = 0, 1, 0, 0
    with open(full, "rb") as f:
        while block := f.read(1 << 24):
            find, i = block.find, 0
            while True:
                j = find(b"\n", i)
                if j < 0:
                    break
                count += 1
                i = j + 1
                if count == lines:
                    end = pos + i
                    yield Partition(index, path, full, "jsonl", start, end, line).to_dict()
                    index += 1
                    start, line, count = end, line + lines, 0
            pos += len(block)
    if start < size:
        yield Partition(index, path, full, "jsonl", start, size, line).to_dict()


def _chunks(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    it = iter(items)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


class _QuietPool(multiprocessing.pool.Pool):
    """A process pool whose housekeeping thread does not wake for every result in flight.

    The standard pool's worker handler waits on its result pipe too, so while a large result
    (a block and its decisions, about a megabyte) streams through the pipe it wakes again and
    again: measured, a third of the main process's time. It needs to wake only when a worker
    exits or the pool changes state (no task limit per worker here)."""

    def _get_sentinels(self):
        return [self._change_notifier._reader]


class BatchStopped(Exception):
    """A run that stopped before its end: interrupted (Ctrl-C, ``why`` "interrupted"; SIGTERM,
    "terminated"), or the audit log
    ("log") or the output ("output") could not be written. Every case counted in ``summary`` is
    recorded and written out; the log is consistent, and resuming the run (``resume=True``)
    releases what is recorded and decides the rest."""

    def __init__(self, why: str, message: str, summary: Summary, recorded: int):
        super().__init__(message)
        self.why, self.summary, self.recorded = why, summary, recorded


@contextlib.contextmanager
def _finally(then: Callable[[], None]) -> Iterator[None]:
    try:
        yield
    finally:
        then()


class _StopNow(Exception):
    """Ctrl-C while the run waited for input or for the log's lock: stopping there loses nothing."""


class _Seqs:
    """Sets of record sequence numbers per chain, kept as sorted ranges (a run's own records are
    a few long runs of numbers, so this stays small however many cases a run has)."""

    def __init__(self) -> None:
        self._ranges: dict[str | None, list[list[int]]] = {}

    def add(self, chain: str | None, first: int, last: int | None = None) -> None:
        last = first if last is None else last
        ranges = self._ranges.setdefault(chain, [])
        if ranges and ranges[-1][0] <= first <= ranges[-1][1] + 1:
            ranges[-1][1] = max(ranges[-1][1], last)
        else:
            bisect.insort(ranges, [first, last])

    def __contains__(self, ref: tuple) -> bool:
        chain, seq = ref
        ranges = self._ranges.get(chain)
        if not ranges:
            return False
        i = bisect.bisect_right(ranges, [seq, float("inf")]) - 1
        return i >= 0 and ranges[i][0] <= seq <= ranges[i][1]


class Batch:
    """One run over case files: ``Batch(...).run(out)`` returns the :class:`Summary`.

    A case id that this ruleset (any version) has already decided or referred in the log is not
    decided again: by default it is rejected (``already_decided``, naming the earlier record);
    with ``resume`` a recorded case with the same input is released as recorded; with
    ``redecide`` it is decided again and the new record names the one it supersedes. The check
    and the append happen under the log's append lock, so two runs of one input at once record
    each case once.
    """

    def __init__(self, ruleset_path: str, inputs: list[str], log: AuditLog, *, workers: int = 1,
                 resume: bool = False, chunk_size: int = 1000, fmt: str | None = None,
                 progress: Callable[[int], None] | None = None, pii: tuple[str, bytes | None] = ("keep", None),
                 redecide: bool = False, limits: Limits | None = None):
        if resume and redecide:
            raise ValueError("resume and redecide cannot be combined: resume releases recorded decisions, "
                             "redecide replaces them")
        self.ruleset_path, self.inputs, self.log = ruleset_path, inputs, log
        self.workers, self.resume, self.chunk_size, self.fmt = workers, resume, chunk_size, fmt
        self.redecide = redecide
        self.limits = limits or Limits()  # what one input line may cost to read
        self.progress = progress
        self.pii = pii
        self.policy = PiiPolicy(*pii)  # the run's one policy (workers build their own)
        self.plan = compile_plan(load(ruleset_path))
        self.schema = self.plan.ruleset.latest.model.case
        self.recorded = 0  # records this run appended
        # what the log's records keep (engine/audit/block_store.py): the workers build the blocks
        self._options = (log.store.keep_released, log.store.codec)

    def items(self) -> Iterator[Item]:
        for path in self.inputs:
            yield from read(path, self.schema, self.fmt, self.limits)

    def run(self, write: Callable[[str], None] | None = None, *,
            write_chunk: Callable[[str], None] | None = None) -> Summary:
        """Decide every input; write each decision JSON (``write(line)``, or ``write_chunk(text)``
        once per committed chunk with its complete lines). Raises :class:`BatchStopped` when
        interrupted (SIGINT, between two chunks) or when the log or the output cannot be written."""
        if write_chunk is None:
            def write_chunk(text: bytes) -> None:
                if write is not None:
                    for line in text.decode("utf-8").split("\n")[:-1]:  # not splitlines: a string may hold U+2028
                        write(line)
        summary = Summary()
        started = time.perf_counter()
        self._stored_rulesets = False
        self._mine = _Seqs()  # what this run recorded or released: a case id seen again is a repeat
        self._stop = self._at_once = False
        self._held: list = []  # appended in the open transaction, not yet committed nor written out
        self._held_cases = 0
        self._why = "interrupted"
        restore = self._catch_interrupts()
        try:
            self._run(summary, write_chunk)
        except _StopNow:
            summary.seconds = time.perf_counter() - started
            raise BatchStopped(self._why, f"{self._why} after {summary.read:,} cases", summary,
                               self.recorded) from None
        except StoreError as exc:
            summary.seconds = time.perf_counter() - started
            raise BatchStopped("log", str(exc), summary, self.recorded) from exc
        except BatchStopped as exc:
            summary.seconds = time.perf_counter() - started
            exc.summary = summary
            raise
        finally:
            self.log.store.rollback_group()  # a run that failed: what was not committed is not released
            restore()
        summary.seconds = time.perf_counter() - started
        return summary

    def _catch_interrupts(self) -> Callable[[], None]:
        """Until the returned function is called, a first SIGINT or SIGTERM asks the run to stop after
        the chunk in flight (so that what is recorded is also written out); a second one stops at once."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        owner = os.getpid()

        def stop(signum, frame) -> None:
            if os.getpid() != owner:  # a worker just forked, before its own handlers are set: it holds
                if signum == signal.SIGTERM:  # no lock of the pool yet, and the pool's SIGTERM must end it
                    signal.signal(signum, signal.SIG_DFL)
                    os.kill(os.getpid(), signum)
                return
            if self._stop:
                raise KeyboardInterrupt
            self._stop = True
            if signum == signal.SIGTERM:
                self._why = "terminated"
            # waiting for input (a terminal, a pipe) or for another process's lock on the log: every
            # chunk so far is out, and the one being appended is rolled back
            if self._at_once:
                raise _StopNow

        previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
        return lambda: [signal.signal(signum, handler) for signum, handler in previous.items()]

    def _units(self) -> Iterator[tuple[str, object]]:
        """The input as units of work, in order: ("part", byte range) of a regular JSON Lines or CSV
        file, which a worker reads itself, or ("items", chunk) read here (standard input, a pipe, a
        JSON array file). While input is being read here, Ctrl-C stops the run at once."""
        for path in self.inputs:
            ranges = self._ranges(path)
            if ranges is not None:
                for part in ranges:
                    yield "part", part
                continue
            chunks = _chunks(read(path, self.schema, self.fmt, self.limits), self.chunk_size)
            while True:
                self._at_once = True
                try:
                    chunk = next(chunks, None)
                finally:
                    self._at_once = False
                if chunk is None:
                    break
                yield "items", chunk

    def _ranges(self, path: str) -> Iterable[dict] | None:
        """Byte ranges of about ``chunk_size`` cases of a regular JSON Lines or CSV file; None for
        anything a worker cannot open and seek in itself."""
        if path == "-" or not os.path.isfile(path):
            return None
        with open(path, "rb") as f:
            head = f.read(1 << 16)
        fmt = self.fmt or detect_format(path, head[:64])
        if fmt == "jsonl":
            return _line_ranges(path, self.chunk_size)
        if fmt != "csv":
            return None
        per_line = max(16, len(head) // max(1, head.count(b"\n")))
        return [p.to_dict() for p in partitions([path], fmt, max(4096, self.chunk_size * per_line))]

    def _decide(self, unit: tuple[str, object]) -> tuple:
        kind, what = unit
        if kind == "part":
            return decide_part(what, self.limits.to_dict(), self._options)  # type: ignore[arg-type]
        return decide_block(what, self.plan, self.policy, self._options, lean=False)  # type: ignore[arg-type]

    def _check_stop(self, summary: Summary, write_chunk: Callable[[str], None] | None = None,
                    ready: bool = False, kind: str = "items") -> None:
        """Release what is held once enough is (or nothing more is ready, or the input is read here,
        where the next read may wait); stop if asked to, after releasing what is recorded."""
        if write_chunk is not None and (self._stop or kind == "items" or not ready
                                        or self._held_cases >= GROUP_CHUNKS * self.chunk_size):
            self._flush(summary, write_chunk)
        if self._stop:
            raise BatchStopped(self._why, f"{self._why} after {summary.read:,} cases", summary, self.recorded)

    def _run(self, summary: Summary, write_chunk: Callable[[str], None]) -> None:
        if self.workers <= 1:
            _worker["plan"], _worker["pii"] = self.plan, self.policy
            for unit in self._units():
                self._commit(self._decide(unit), summary, write_chunk, unit[1] if unit[0] == "items" else None)
                # one process: each chunk is committed and released before the next is decided (the
                # group commit pays where workers decide the next chunks during the commit)
                self._check_stop(summary, write_chunk, False, unit[0])
            self._flush(summary, write_chunk)
            return
        ctx = mp.get_context("fork")
        ending = ctx.RawValue("b", 0)  # set when the pool may end its workers (read in their SIGTERM handler)
        limits = self.limits.to_dict()
        with _QuietPool(self.workers, initializer=_init_worker, initargs=(self.ruleset_path, *self.pii, ending),
                        context=ctx) as pool, _finally(lambda: setattr(ending, "value", 1)):
            pending: collections.deque = collections.deque()
            try:
                for kind, what in self._units():
                    if kind == "part":
                        pending.append((kind, None, pool.apply_async(decide_part, (what, limits, self._options))))
                    else:
                        pending.append((kind, what, pool.apply_async(decide_items, (what, self._options))))
                    # bounded: memory stays flat; and what is decided is recorded and released without
                    # waiting for more input (a slow stream, standard input)
                    while len(pending) > 4 * self.workers or (pending and pending[0][2].ready()):
                        done_kind, items, result = pending.popleft()
                        self._commit(result.get(), summary, write_chunk, items)
                        self._check_stop(summary, write_chunk, bool(pending) and pending[0][2].ready(), done_kind)
                    self._check_stop(summary)
                while pending:
                    done_kind, items, result = pending.popleft()
                    self._commit(result.get(), summary, write_chunk, items)
                    self._check_stop(summary, write_chunk, bool(pending) and pending[0][2].ready(), done_kind)
                self._flush(summary, write_chunk)
            finally:
                # a run that stops leaves the pool once no worker is busy (the chunks in flight are
                # dropped, unrecorded): ending a pool while a worker writes a large result into the
                # pool's pipe can hang it. A bound, in case a worker was killed from outside.
                waited = time.monotonic()
                for *_, result in pending:
                    result.wait(max(0.0, 60 - (time.monotonic() - waited)))
                if all(result.ready() for *_, result in pending):  # every worker idle: each ends of itself
                    pool.close()
                    pool.join()

    def _commit(self, chunk: Chunk, summary: Summary, write_chunk: Callable[[str], None],
                items: list[Item] | None = None) -> None:
        """Record a decided chunk (its block linked in the open transaction); its decisions are
        released once that commits (:meth:`_flush`): write-ahead, in input order. Which cases were
        decided before is read under the same lock as the append; when that changes what is
        recorded (a repeat, a case decided before), the chunk's entries are rebuilt here."""
        store = self.log.store
        block = chunk.block
        rulesets = [] if self._stored_rulesets else [stored_ruleset(v) for v in self.plan.ruleset.versions]
        settled: list = []
        its: list = [items or chunk.items]

        def prepare(s: AuditStore) -> tuple:
            if not chunk.repeats and not s.any_indexed(block.index):  # none of these cases was recorded
                settled[:] = [None, None, [], []]                       # before: recorded as built
                return [], None, block
            keys = [k for k in block.keys() if k is not None]
            prior = s.prior_records_by_key(keys, self.plan.id, with_body=self.resume) if keys else []
            if not prior and not chunk.repeats:
                settled[:] = [None, None, [], []]
                return [], None, block
            entries, infos, its[0] = self._materialise(chunk, its[0])
            settled[:] = self._settle(its[0], list(zip(entries, infos)), prior)
            to_record, _, superseded, _ = settled
            if not superseded:
                return to_record, None

            def close_superseded(s2: AuditStore, done: list) -> None:
                for index, record in superseded:
                    s2.supersede_work_items(record, done[index][0])
            return to_record, close_superseded

        self._at_once = True
        try:
            done = store.append_grouped(prepare, rulesets)
        finally:
            self._at_once = False
        self._stored_rulesets = True
        _, released, superseded, resumed = settled
        if done:
            self._mine.add(None, done[0][0], done[-1][0])
        for record in resumed:
            self._mine.add(record.chain, record.seq)
        if released is None:  # as the worker decided: its output and summary stand
            self._held.append((chunk.output, chunk.summary, len(done), 0, 0))
        else:
            part = Summary()
            lines = its[0] if its[0] is not None else [Item(chunk.source, line) for line in chunk.lines]
            for item, (_, info) in zip(lines, released):
                part.count(info, item.source, item.line)
            self._held.append(("".join([text + "\n" for text, _ in released]).encode("utf-8"), part, len(done),
                               len(resumed), len(superseded)))
        self._held_cases += len(chunk)

    def _materialise(self, chunk: Chunk, items: list[Item] | None) -> tuple[list, list, list[Item]]:
        """The entries, summary infos and items of a chunk whose worker sent none: decided again
        from its records' inputs (the lines as read), which gives the same entries."""
        if items is None:
            items = []
            for line, record in zip(chunk.lines, chunk.block.records()):
                meta, data = meta_and_input(record)
                text = data.decode("utf-8")
                errors = meta.get("e") or (meta.get("z") or {}).get("errors") or []
                codes = {e.get("code") for e in errors if isinstance(e, dict)}
                if "malformed_input" in codes:
                    items.append(Item(chunk.source, line, error=json.loads(text).get("error")))
                else:
                    items.append(Item(chunk.source, line, None, None, text))
        if chunk.entries is not None:
            return chunk.entries, chunk.infos, items
        full = [item if item.raw is not None or item.error is not None else
                Item(item.source, item.line, _raw(item), None, item.text) for item in items]
        decided = decide_chunk(full, self.plan, self.policy)
        return [e for e, _ in decided], [info for _, info in decided], items

    def _flush(self, summary: Summary, write_chunk: Callable[[str], None]) -> None:
        """Commit the appends held in the open transaction (one fsync for them all), then release
        their decisions, in input order: nothing is written out before it is durable in the log."""
        if not self._held:
            return
        self._at_once = True
        try:
            self.log.store.commit_group()
        finally:
            self._at_once = False
        held, self._held, self._held_cases = self._held, [], 0
        for output, part, n_done, n_resumed, n_superseded in held:
            self.recorded += n_done
            try:
                write_chunk(output)
            except OSError as exc:
                raise BatchStopped("output", f"cannot write the output: {exc.strerror or exc}", summary,
                                   self.recorded) from exc
            summary.add(part)
            summary.resumed += n_resumed
            summary.redecided += n_superseded
            if self.progress is not None:
                self.progress(part.read)

    def _settle(self, chunk: list[Item], decided: list, prior: list[PriorRecord]) -> list:
        """What becomes of each case of a chunk, given the records of its case ids already in the log:
        [entries to record, (decision JSON, info) per case in input order, (entry index, superseded
        record) pairs, records released again]."""
        by_key: dict[str, list[PriorRecord]] = collections.defaultdict(list)
        for record in prior:
            by_key[record.key].append(record)
        to_record: list = []
        released: list = []
        superseded: list = []
        resumed: list[PriorRecord] = []
        taken: set = set()
        seen: set = set()

        def release(record: PriorRecord, entry) -> None:
            text = as_released(decision_of(record.body), entry)  # as decided: the log's copy may be masked
            released.append((text, info_of(text)))
            resumed.append(record)
            taken.add((record.chain, record.seq))

        def keep(entry, info) -> None:
            to_record.append(entry)
            released.append((entry.released or entry.decision, info))  # as decided: the log's copy may be masked

        for item, (entry, info) in zip(chunk, decided):
            key = case_key(entry.case_id)
            if key is None:
                keep(entry, info)
                continue
            records = by_key.get(key, [])
            mine = [r for r in records if (r.chain, r.seq) in self._mine or (r.chain, r.seq) in taken]
            repeat = key in seen or bool(mine)
            seen.add(key)
            if repeat:  # this run has decided (or released) this case id already
                found = self._resumable(records, entry, None, taken, repeat=True) if self.resume else None
                if found is not None:
                    release(found, entry)
                else:
                    keep(*self._duplicate(item, entry))
                continue
            active = next((r for r in reversed(records) if r.kind in ("decision", "referral")), None)
            found = self._resumable(records, entry, active, taken, repeat=False) if self.resume else None
            if found is not None:
                release(found, entry)
            elif active is None:
                keep(entry, info)
            elif self.redecide:
                superseded.append((len(to_record), active))
                keep(superseding(entry, active), info)
            else:
                keep(*already_decided(self.plan, item, entry, active, self.policy))
        return [to_record, released, superseded, resumed]

    @staticmethod
    def _resumable(records: list[PriorRecord], entry, active: PriorRecord | None, taken: set, *,
                   repeat: bool) -> PriorRecord | None:
        """The record an interrupted run made of this case, to release instead of deciding again:
        the case's decision or referral if made from the same input and ruleset version, else a
        later rejection of the same input (a repeat in the input: its duplicate_case_id rejection)."""
        def same(r: PriorRecord) -> bool:
            return (r.input_sha256 == entry.input_sha256 and r.ruleset_sha256 == entry.ruleset_sha256
                    and (r.chain, r.seq) not in taken)

        if not repeat and active is not None and same(active):
            return active
        start = 0 if active is None else records.index(active) + 1
        for r in reversed(records[start:]):
            if r.kind == "rejection" and same(r) and ("duplicate_case_id" in _codes(r)) == repeat:
                return r
        return None

    def _duplicate(self, item: Item, entry) -> tuple:
        return duplicate(self.plan, item, entry, self.policy)


def _codes(record: PriorRecord) -> set:
    errors = json.loads(record.body or "{}").get("decision", {}).get("errors") or []
    return {e.get("code") for e in errors if isinstance(e, dict)}


def already_decided(plan: Plan, item: Item, entry, earlier: PriorRecord, pii: PiiPolicy) -> tuple:
    """A case this ruleset has already decided or referred in the log, met again in another run:
    rejected, naming the earlier record, and opening no work item. Returns its entry and info."""
    raw = _raw(item)
    decision = already_decided_decision(plan, raw, entry.case_id, earlier)
    return dataclasses.replace(make_entry(decision, raw, pii, item.text), work_item=None), outcome_info(decision)


def already_decided_decision(plan: Plan, raw, case_id, earlier: PriorRecord) -> Decision:
    """The rejection of a case id this ruleset already decided or referred (``earlier``) in the log."""
    period = plan._periods[-1]
    field_name = plan.ruleset.latest.model.case_id
    what = "decided" if earlier.kind == "decision" else "referred"
    error = CaseError(field_name, "already_decided",
                      f"case id {case_id} was {what} before in this log (record {earlier.ref}); "
                      "it is not decided again")
    return Decision((period.rejected, raw, None, (error,)))


def superseding(entry, earlier: PriorRecord):
    """The entry of a decision made again (``redecide``): its decision names the record it supersedes."""
    decision = json.loads(entry.decision)
    decision["supersedes"] = earlier.seq
    extra = {"supersedes": earlier.seq}
    if earlier.chain is not None:
        decision["supersedes_chain"] = extra["supersedes_chain"] = earlier.chain
    if entry.released is None:
        meta = None if entry.meta is None else (entry.meta + "," if entry.meta else "") + '"x":' + canonical_json(extra)
        return dataclasses.replace(entry, decision=canonical_json(decision), meta=meta)
    released = json.loads(entry.released)
    released["supersedes"] = decision["supersedes"]
    if "supersedes_chain" in decision:
        released["supersedes_chain"] = decision["supersedes_chain"]
    return dataclasses.replace(entry, decision=canonical_json(decision), released=canonical_json(released))


def duplicate(plan: Plan, item: Item, entry, pii: PiiPolicy) -> tuple:
    """A second case with an id already decided in this run: rejected, not decided twice.
    Returns its audit entry and summary info."""
    period = plan._periods[-1]
    field_name = plan.ruleset.latest.model.case_id
    error = CaseError(field_name, "duplicate_case_id",
                      f"case id {entry.case_id} appears more than once in this run; only the first is decided")
    raw = _raw(item)
    decision = Decision((period.rejected, raw, None, (error,)))
    return make_entry(decision, raw, pii, item.text), outcome_info(decision)


def _raw(item: Item):
    """The case an item was read as (a worker sends the line back rather than the parsed case)."""
    if item.raw is not None:
        return item.raw
    if item.text is not None and item.error is None:
        value, _ = parse_json(item.text, WIDEST)
        return value if value is not None else {}
    return {}


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
