"""Writing and reading version 2 blocks (engine/audit/blocks.py) in an audit store.

One row of ``audit_blocks`` per committed chunk, one ``audit_case_index`` row per record
with a case id (written with one statement per block), and the chain's head moved to the
block's hash, all in the append's transaction. Readers get the records back as
:class:`AuditRecordV2` objects, which render their released decision JSON from the stored
ruleset source when asked (engine/audit/compact.py).
"""

from __future__ import annotations

import functools
import hashlib
import json
from decimal import Decimal
from collections.abc import Iterator
from dataclasses import dataclass

from ..evaluation.decision import ENGINE_VERSION, canonical_json, encode_scalar
from . import blocks
from .blocks import DIGEST, KIND_CODES, KIND_NAMES, BlockBuilder, StoredBlock
from .record import case_key
from .compact import NotRenderable, full_fields, item_digest, render

BLOCK_COLUMNS = "chain, first_seq, last_seq, recorded_at, header, records, digests, prev_hash, hash"


class EntryBlock(BlockBuilder):
    """A block built from audit entries (engine/audit/record.py ``Entry``), keeping each entry."""

    __slots__ = ("entries", "rulesets", "keep_released", "work")

    def __init__(self, keep_released: bool = False) -> None:
        super().__init__()
        self.entries: list | None = []
        self.work: list | None = None  # (index, work item) of the records that open one, when entries are gone
        self.rulesets: list[str] = []
        self.keep_released = keep_released

    def __getstate__(self):
        return (self.records, self.digests, self.link, self.case_keys, self.kinds, self.entries, self.rulesets,
                self.keep_released, self.work)

    def __setstate__(self, state) -> None:
        (self.records, self.digests, self.link, self.case_keys, self.kinds, self.entries, self.rulesets,
         self.keep_released, self.work) = state

    def work_items(self) -> list:
        """(index, work item) of each record that opens a work item."""
        if self.work is not None:
            return self.work
        return [(i, e.work_item) for i, e in enumerate(self.entries or []) if e.work_item is not None]

    def record_of(self, entry) -> tuple[bytes, bytes, str | None, str]:
        """(record bytes, SHA-256 of the released JSON, case key, kind code) of one entry."""
        code = KIND_CODES[entry.kind]
        head = '{"' + code.upper() + '":' + encode_scalar(entry.case_id)
        sha = entry.ruleset_sha256
        if sha is not None:
            try:
                n = self.rulesets.index(sha)
            except ValueError:
                n = len(self.rulesets)
                self.rulesets.append(sha)
            if n:
                head += ',"n":' + str(n)
        if entry.meta is not None and not self.keep_released:
            fields = entry.meta
        else:
            fields = full_fields(entry.decision, entry.pii)
        if entry.work_item is not None:
            fields += ("," if fields else "") + '"i":"' + item_digest(entry.work_item[2]) + '"'
        meta = head + ("," + fields if fields else "") + "}"
        record = meta.encode("utf-8") + b"\n" + entry.input.encode("utf-8")
        released = hashlib.sha256((entry.released or entry.decision).encode("utf-8")).digest()
        return record, released, case_key(entry.case_id), code

    def add_entry(self, entry) -> None:
        self.entries.append(entry)
        self.add(*self.record_of(entry))

    def replace_entry(self, index: int, entry) -> None:
        self.entries[index] = entry
        self.replace(index, *self.record_of(entry))

    def drop_entries(self, indexes: set[int]) -> None:
        self.entries = [e for i, e in enumerate(self.entries) if i not in indexes]
        self.drop(indexes)


@dataclass
class FrozenBlock:
    """A built block as it travels to the writer: a few large values, no per-record objects.
    ``payload`` is the stored (possibly compressed) records; ``index`` the JSON array of each
    record's [case key, kind code]; ``work`` (index, work item) of the records that open one."""

    n: int
    payload: bytes
    digests: bytes
    link: bytes
    rulesets: list
    index: str
    work: list
    codec: str

    def __getstate__(self):
        return (self.n, self.payload, self.digests, self.link, self.rulesets, self.index, self.work, self.codec)

    def __setstate__(self, state) -> None:
        self.n, self.payload, self.digests, self.link, self.rulesets, self.index, self.work, self.codec = state

    def __len__(self) -> int:
        return self.n

    def records(self) -> list[bytes]:
        return blocks.split_records(blocks.decompress(self.payload, self.codec))

    def keys(self) -> list:
        return [k for k, _ in json.loads(self.index)]


def freeze(block: EntryBlock, codec: str = "none") -> FrozenBlock:
    return FrozenBlock(len(block), blocks.compress(block.payload(), codec), bytes(block.digests), block.link,
                       list(block.rulesets), json.dumps([[k, c] for k, c in zip(block.case_keys, block.kinds)],
                                                        ensure_ascii=False, separators=(",", ":")),
                       block.work_items(), codec)


class BlockStoreMixin:
    """The block half of :class:`~vedtak.audit.store.AuditStore` (which provides _execute & co)."""

    codec = "none"  # "zstd": compress each block's records (set by the log's owner)
    keep_released = False  # store every record's full released decision JSON too

    # -- writing ---------------------------------------------------------------------------
    # statements that take a block's index as one JSON array (SQLite's dialect; PostgreSQL overrides)
    INDEX_INSERT = ("INSERT INTO audit_case_index (case_id, chain, seq, kind) SELECT json_extract(value, '$[0]'), "
                    "?, ? + key, json_extract(value, '$[1]') FROM json_each(?) WHERE json_type(value, '$[0]') = 'text'")
    KEYS_IN_JSON = "IN (SELECT value FROM json_each(?))"  # "case_id <this>": one of a JSON array's strings

    def _link_block(self, block: "EntryBlock | FrozenBlock", seq: int, prev: str, chain: str | None,
                    now: str) -> list[tuple[int, str]]:
        """Insert a built block after the chain head (seq, prev), with its index rows (one statement),
        and move the head; inside an append. Returns each record's (seq, block hash)."""
        n = len(block)
        if not n:
            return []
        if not isinstance(block, FrozenBlock):
            block = freeze(block, self.codec)
        first, last = seq + 1, seq + n
        head = blocks.header(chain, first, last, now, block.codec, ENGINE_VERSION, block.rulesets)
        hash_ = blocks.block_hash(prev, head, block.link)
        self._execute(self._sql(f"INSERT INTO audit_blocks ({BLOCK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
                      (chain or "", first, last, now, head, block.payload, block.digests, prev, hash_))
        self._execute(self._sql(self.INDEX_INSERT), (chain or "", first, block.index))
        if chain is None:
            self._execute(self._sql("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1"), (last, hash_))
        else:
            self._execute(self._sql("UPDATE audit_chains SET seq = ?, hash = ? WHERE chain = ?"), (last, hash_, chain))
        return [(s, hash_) for s in range(first, last + 1)]

    # -- reading ---------------------------------------------------------------------------
    def blocks(self, chain: str | None = None, start: int = 1) -> Iterator[StoredBlock]:
        """A chain's blocks in order, from the one holding record ``start``."""
        for row in self._query(self._sql(
                f"SELECT {BLOCK_COLUMNS} FROM audit_blocks WHERE chain = ? AND last_seq >= ? ORDER BY first_seq"),
                (chain or "", start)):
            yield _stored(row)

    def block_chains(self) -> list[str]:
        """Names of the partition chains that hold blocks."""
        return [r[0] for r in self._query("SELECT DISTINCT chain FROM audit_blocks WHERE chain <> ''")]

    def block_records(self, chain: str | None = None, start: int = 1) -> Iterator["AuditRecordV2"]:
        for block in self.blocks(chain, start):
            for record in records_of(block, self):
                if record.seq >= start:
                    yield record

    def block_record(self, seq: int, chain: str | None = None) -> "AuditRecordV2 | None":
        rows = list(self._query(self._sql(
            f"SELECT {BLOCK_COLUMNS} FROM audit_blocks WHERE chain = ? AND first_seq <= ? AND last_seq >= ?"),
            (chain or "", seq, seq)))
        if not rows:
            return None
        for record in records_of(_stored(rows[0]), self):
            if record.seq == seq:
                return record
        return None

    KEYS_OF_INDEX = "SELECT json_extract(value, '$[0]') FROM json_each(?)"
    # what verify reads: the numbers as stored, everything else as bytes (SQLite keeps whatever type
    # a forger writes; text that is not UTF-8 would stop the reading). PostgreSQL's columns are typed.
    VERIFY_COLUMNS = ("CAST(chain AS BLOB), first_seq, last_seq, CAST(recorded_at AS BLOB), CAST(header AS BLOB), "
                      "CAST(records AS BLOB), CAST(digests AS BLOB), CAST(prev_hash AS BLOB), CAST(hash AS BLOB), "
                      "typeof(records) = 'blob' AND typeof(digests) = 'blob'")
    INDEX_VERIFY_COLUMNS = "case_id, chain, seq, kind"

    def any_indexed(self, index: str) -> bool:
        """Whether the log holds a record of any case of a block's index (its JSON array of [case
        key, kind]); inside an append. The common answer, no, costs one statement."""
        if self._has_version_1_rows():
            return True  # the careful path reads those rows too
        return bool(self._execute(self._sql(
            f"SELECT 1 FROM audit_case_index WHERE case_id IN ({self.KEYS_OF_INDEX}) LIMIT 1"), (index,)))

    def _has_version_1_rows(self) -> bool:
        found = getattr(self, "_v1_rows", None)
        if found is None:  # version 1 rows are never added after the upgrade: asked once
            found = self._v1_rows = bool(self._execute(
                "SELECT 1 FROM audit_records UNION ALL SELECT 1 FROM audit_chain_records LIMIT 1"))
        return found

    def indexed(self, keys: list[str], *, in_append: bool = True) -> list[tuple[str, str | None, int, str]]:
        """(case key, chain or None, seq, kind name) of every block record of these case keys."""
        if not keys:
            return []
        run = self._execute if in_append else (lambda sql, params: list(self._query(sql, params)))
        rows = run(self._sql(f"SELECT case_id, chain, seq, kind FROM audit_case_index WHERE case_id "
                             f"{self.KEYS_IN_JSON}"), (json.dumps(keys, ensure_ascii=False),))
        return [(key, chain or None, int(seq), KIND_NAMES.get(kind, kind)) for key, chain, seq, kind in rows]

    def _records_at(self, refs: list[tuple[str | None, int]], *, in_append: bool = True) -> dict:
        """The block records at these (chain, seq), read block by block."""
        found: dict = {}
        run = self._execute if in_append else (lambda sql, params: list(self._query(sql, params)))
        wanted = sorted(set(refs), key=lambda r: (r[0] or "", r[1]))
        done_blocks: set = set()
        for chain, seq in wanted:
            if (chain, seq) in found:
                continue
            rows = run(self._sql(f"SELECT {BLOCK_COLUMNS} FROM audit_blocks WHERE chain = ? AND first_seq <= ? "
                                 "AND last_seq >= ?"), (chain or "", seq, seq))
            if not rows or (chain, int(rows[0][1])) in done_blocks:
                continue
            done_blocks.add((chain, int(rows[0][1])))
            for record in records_of(_stored(rows[0]), self):
                found[(chain, record.seq)] = record
        return found

    @functools.cached_property
    def _versions(self) -> dict:
        return {}

    def stored_version(self, sha: str | None):
        """The stored source of one ruleset version (cached per store), or None."""
        if sha is None:
            return None
        found = self._versions
        if sha not in found:
            found[sha] = self.ruleset(sha)
        return found[sha]


_PLANS: dict = {}


def render_plan(stored):
    """The plan of one stored ruleset version, compiled from its stored source (cached by SHA-256)."""
    plan = _PLANS.get(stored.sha256)
    if plan is None:
        from ..evaluation.compile import compile as compile_plan
        from ..language.load import load_sources
        if len(_PLANS) > 64:
            _PLANS.clear()
        plan = _PLANS[stored.sha256] = compile_plan(load_sources([(stored.path, stored.source)], stored.ruleset_id))
    return plan


def _stored(row) -> StoredBlock:
    chain, first, last, at, head, records, digests, prev, hash_ = row
    return StoredBlock(chain or None, int(first), int(last), at, head, bytes(records), bytes(digests), prev, hash_)


def records_of(block: StoredBlock, store) -> list["AuditRecordV2"]:
    """The records of a stored block (raises blocks.BlockError or ValueError if it is malformed)."""
    head = json.loads(block.header)
    rulesets = head.get("rulesets") or []
    texts = block.record_texts()
    out = []
    for i, text in enumerate(texts):
        meta, data = blocks.meta_and_input(text)
        kind, cid = blocks.kind_of(meta)
        n = meta.get("n", 0)
        sha = rulesets[n] if isinstance(n, int) and 0 <= n < len(rulesets) else None
        released = block.digests[i * DIGEST:i * DIGEST + 32].hex()
        out.append(AuditRecordV2(block.first_seq + i, block.recorded_at, KIND_NAMES.get(kind, "?"),
                                 cid, data.decode("utf-8"), meta, sha, head.get("engine_version"),
                                 block.prev_hash, block.hash, released, block.chain, store.stored_version(sha)))
    return out


@dataclass(frozen=True, eq=False)
class AuditRecordV2:
    """One version 2 record, with the same reading interface as version 1's records."""

    seq: int
    recorded_at: str
    kind: str
    case_id: object
    stored_input: str  # the input as stored: a batch line as received, or canonical JSON
    meta: dict
    ruleset_sha256: str | None
    engine_version: str | None
    prev_hash: str  # the block's
    hash: str  # the block's
    released_sha256: str
    chain: str | None
    version: object  # the StoredRuleset of ruleset_sha256, if the log holds it

    record_version = 2

    @property
    def ref(self) -> str:
        return str(self.seq) if self.chain is None else f"{self.chain}:{self.seq}"

    @functools.cached_property
    def raw(self):
        """The stored input as data (read again as the batch read it)."""
        from ..batch.input_limits import WIDEST
        from ..batch.json_text import parse_json
        value, why = parse_json(self.stored_input, WIDEST)
        if why is None:
            return value
        try:  # a library caller's case the batch reader would refuse (a lone surrogate): read as JSON
            return json.loads(self.stored_input, parse_float=Decimal)
        except ValueError:
            return self.stored_input  # not JSON at all (a forgery): shown as the text it is

    @property
    def input(self) -> str:
        return canonical_json(self.raw)

    @property
    def input_sha256(self) -> str:
        return hashlib.sha256(self.stored_input.encode("utf-8")).hexdigest()

    @property
    def ruleset_id(self) -> str | None:
        return self.version.ruleset_id if self.version is not None else None

    @property
    def ruleset_version(self) -> str | None:
        return self.version.version if self.version is not None else None

    @property
    def pii(self) -> str | None:
        p = self.meta.get("p")
        return None if p is None else canonical_json(p)

    @functools.cached_property
    def rendered(self) -> str:
        """The released decision JSON, rendered again from the stored ruleset source (or kept);
        NotRenderable if it cannot be (replay reports that as a difference)."""
        if "z" in self.meta:
            return canonical_json(self.meta["z"])
        if self.version is None:
            raise NotRenderable(f"record {self.ref}: its ruleset version is not stored in the log")
        return render(self.meta, self.raw, render_plan(self.version), self.ruleset_sha256)

    @property
    def decision(self) -> str:
        """The decision JSON for readers: as rendered, or a note saying why it cannot be."""
        try:
            return self.rendered
        except NotRenderable as exc:
            return canonical_json({"not_rendered": str(exc)})

    @property
    def renders_exactly(self) -> bool:
        """Whether the rendered decision JSON has the SHA-256 the record holds (not for masked copies)."""
        if "p" in self.meta:
            return True  # a masked copy: what was released held personal data the log does not keep
        try:
            return hashlib.sha256(self.rendered.encode("utf-8")).hexdigest() == self.released_sha256
        except NotRenderable:
            return False

    @property
    def decision_date(self) -> str | None:
        try:
            return json.loads(self.decision).get("decision_date")
        except (ValueError, NotRenderable):
            return None

    @property
    def body(self) -> str:
        """The record as version 1's body (for readers that take a body): canonical JSON."""
        return canonical_json(self.to_dict(with_hash=False))

    def to_dict(self, with_hash: bool = True) -> dict:
        """The record as exported (JSONL): every field, the decision rendered again."""
        data = {"case_id": self.case_id, "chain": self.chain, "decision": json.loads(self.decision),
                "decision_date": self.decision_date, "engine_version": self.engine_version,
                "input": self.raw, "kind": self.kind, "pii": self.meta.get("p"), "record_version": 2,
                "recorded_at": self.recorded_at, "released_sha256": self.released_sha256,
                "ruleset": None if self.ruleset_sha256 is None else {
                    "id": self.ruleset_id, "sha256": self.ruleset_sha256, "version": self.ruleset_version},
                "seq": self.seq, "block_prev_hash": self.prev_hash}
        if data["chain"] is None:
            del data["chain"]
        if with_hash:
            data["hash"] = self.hash
        return json.loads(canonical_json(data))
