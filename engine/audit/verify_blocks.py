"""Verifying a chain's version 2 blocks: every record, every digest, every block link and index row.

For each block, in order: its columns against its header (which the block hash commits to),
its place in the chain (first record follows the last one before it; prev_hash is the hash
before it), its framing and record count, then each record's digests — a record whose
content does not match its own leaf is named as edited; a record whose leaf holds but whose
link does not names its predecessor, changed with its digests recomputed — then the block
hash, time order, and each record's meta. Index rows by case id are checked against the
records: a multiset digest over (case, chain, seq, kind) of both sides, and when they
differ, row by row, naming what is missing or was added.
"""

from __future__ import annotations

import hashlib
import json

import msgspec

from ..decision import canonical_json
from . import blocks
from .compact import item_digest
from .blocks import DIGEST, KIND_CODES, KIND_NAMES, LOCATE, SEED, BlockError

_sha = hashlib.sha256
_decode = msgspec.json.Decoder().decode
_MASK = (1 << 64) - 1


def _key(case_id) -> str | None:
    if case_id.__class__ is int:
        return str(case_id)
    return None if case_id is None else json.dumps(case_id, ensure_ascii=False)


def check_blocks(store, chain: str | None, start: tuple[int, str], add, report, rulesets, facts,
                 last_time: str = "") -> tuple[int, str]:
    """Check the blocks of one chain following (seq, hash) ``start`` (the chain's version 1 records'
    end); feed ``facts`` (engine/audit/verify.py) with what its records commit to; returns the last
    (seq, hash)."""
    seq, prev = start
    flagged = add.flagged
    expected_index = 0
    expected_rows: list | None = None
    name = chain or ""
    for row in store._query(store._sql(
            f"SELECT {_COLUMNS} FROM audit_blocks WHERE chain = ? ORDER BY first_seq"), (name,)):
        col_chain, first, last, at, head_text, data, digests, prev_col, hash_ = row
        first, last, data, digests = int(first), int(last), bytes(data), bytes(digests)
        where = f"record {first}" if first == last else f"records {first} to {last}"
        try:
            head = json.loads(head_text)
            if not isinstance(head, dict):
                raise ValueError("not an object")
        except ValueError:
            add(first, "edited", f"the block of {where}: its header is not valid (changed)")
            seq, prev = last, hash_
            continue
        columns = {"chain": (chain, head.get("chain")), "first_seq": (first, head.get("first_seq")),
                   "last_seq": (last, head.get("last_seq")), "recorded_at": (at, head.get("recorded_at"))}
        for col, (have, said) in columns.items():
            if have != said:
                add(first, "edited", f"the block of {where}: column {col} was changed ({have!r}, its header "
                    f"says {said!r})")
                break
        if first != seq + 1:
            if first > seq + 1:
                gap = f"{seq + 1}" if first == seq + 2 else f"{seq + 1} to {first - 1}"
                add(seq + 1, "deleted", f"record{'s' if first > seq + 2 else ''} {gap} "
                    f"{'are' if first > seq + 2 else 'is'} missing")
            else:
                add(first, "inserted", f"the block of {where} overlaps records before it")
        if prev_col != prev:
            add(first, "broken_chain" if first == seq + 1 else "reordered",
                f"the block of {where} does not follow the record before it (its prev_hash was changed, or a "
                "block before it was replaced)")
        if isinstance(at, str) and at < last_time:
            add(first, "edited", f"{where} recorded at {at}, earlier than the record before it ({last_time}): "
                "the time was changed")
        last_time = max(last_time, at) if isinstance(at, str) else last_time
        n = last - first + 1
        try:
            texts = blocks.split_records(blocks.decompress(data, str(head.get("codec", "none"))))
        except BlockError as exc:
            add(first, "edited", f"the block of {where} cannot be read: {exc}")
            report.records += max(n, 0)
            seq, prev = last, hash_
            continue
        report.records += len(texts)
        if len(texts) != n or len(digests) != n * DIGEST:
            add(first, "deleted" if len(texts) < n else "inserted",
                f"the block of {where} holds {len(texts)} records and {len(digests) // DIGEST} digests, not {n}: "
                "records were removed or added")
        link, blamed = SEED, False
        rulesets_of = head.get("rulesets") or []
        for i, text in enumerate(texts):
            at_seq = first + i
            d = digests[i * DIGEST:(i + 1) * DIGEST]
            leaf = _sha(d[:32] + text).digest()
            link = _sha(link + leaf).digest()
            if not blamed and len(d) == DIGEST:
                if leaf[:LOCATE] != d[32:32 + LOCATE]:
                    add(at_seq, "edited", f"record {at_seq} was changed: its content does not match its hash")
                    blamed = True
                elif link[:LOCATE] != d[32 + LOCATE:DIGEST]:
                    if i:
                        add(at_seq - 1, "edited", f"record {at_seq - 1} was changed and its hashes recomputed: "
                            f"record {at_seq} no longer follows it")
                    else:
                        add(at_seq, "edited", f"record {at_seq}: its chain hash was changed")
                    blamed = True
            end_meta = text.find(b"\n")
            try:
                meta = _decode(text[:end_meta]) if end_meta > 0 else None
                kind, cid = blocks.kind_of(meta)
            except (msgspec.DecodeError, UnicodeDecodeError):
                kind = cid = None
            if kind not in KIND_NAMES:
                if not blamed:
                    add(at_seq, "edited", f"record {at_seq} is malformed (changed): it is not a version 2 record")
                    blamed = True
                continue
            if cid is not None:
                key = _key(cid)
                expected_index = (expected_index + hash((key, name, at_seq, kind))) & _MASK
            if kind == "d" and "x" not in meta:
                continue
            if blamed and at_seq in flagged:
                continue
            try:
                n = meta.get("n", 0)
                sha = rulesets_of[n] if type(n) is int and 0 <= n < len(rulesets_of) else None
                _facts(facts, meta, kind, cid, at_seq, chain, at, sha, text[end_meta + 1:], rulesets)
            except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
                add(at_seq, "edited", f"record {at_seq} was forged or changed: {exc}")
        for sha in head.get("rulesets") or []:
            rulesets.check(sha if isinstance(sha, str) else None, first, add)
        if blocks.block_hash(prev_col, head_text, link) != hash_ and not blamed:
            add(first, "edited", f"the block of {where}: its hash does not match its header and records "
                "(changed, or its hash replaced)")
        seq, prev = last, hash_
    _check_index(store, name, expected_index, add)
    facts.ends[chain] = seq
    return seq, prev


class _TextDigest(str):
    """A work item's reason text as a record keeps it (a digest): equal to the texts with that digest."""

    def __eq__(self, other) -> bool:
        return isinstance(other, str) and item_digest(other) == str(self)

    def __ne__(self, other) -> bool:
        return not self == other

    __hash__ = str.__hash__


def _facts(facts, meta: dict, kind: str, cid, seq: int, chain: str | None, at: str, sha: str | None,
           data: bytes, rulesets) -> None:
    """Note what one version 2 record commits to (as engine/audit/verify.py record_facts does for a
    version 1 body); the opened work item from the compact decision, with no rendering."""
    from .log import PRIORITY
    from .verify import record_facts
    if "z" in meta:  # a record that keeps its decision JSON: a human decision, a manifest, a masked copy
        decision = meta["z"]
        record = {"kind": KIND_NAMES[kind], "case_id": cid, "decision": decision, "recorded_at": at,
                  "ruleset": None if sha is None else {"sha256": sha}, "input": json.loads(data)}
        record_facts(facts, record, seq, chain, rulesets)
        return
    key = _key(cid)
    if kind == "r":
        reason = meta.get("w") or "rule"
        proposed = None
        if meta.get("o") is not None:
            proposed = canonical_json({"outcome": meta["o"], "values": meta.get("v") or {}})
        facts.opens[(chain, seq)] = (key, meta.get("q"), reason, _TextDigest(str(meta.get("i"))), proposed,
                                     PRIORITY.get(reason, 0), at)
    elif kind == "j":
        codes = {e.get("code") for e in meta.get("e") or [] if isinstance(e, dict)}
        if "already_decided" not in codes:
            facts.opens[(chain, seq)] = (key, rulesets.review_queue(sha), "invalid-input",
                                         _TextDigest(str(meta.get("i"))), None, 1, at)
    x = meta.get("x")
    if x is not None and kind in "dr" and chain is None:
        target = x["supersedes"]
        if type(target) is not int or type(x.get("supersedes_chain")) not in (str, type(None)):
            raise ValueError("it supersedes a record it does not name as the engine writes it")
        facts.supersedes[(x.get("supersedes_chain"), target)] = seq


_COLUMNS = "chain, first_seq, last_seq, recorded_at, header, records, digests, prev_hash, hash"


def _check_index(store, name: str, expected: int, add) -> None:
    """The index rows of one chain against the digest of what its records say they must be."""
    have = 0
    rows = store._query(store._sql("SELECT case_id, chain, seq, kind FROM audit_case_index WHERE chain = ?"), (name,))
    for key, chain, seq, kind in rows:
        have = (have + hash((key, chain, int(seq), kind))) & _MASK
    if have == expected:
        return
    # they differ: name the rows, comparing them one by one
    want: set = set()
    for block in store.blocks(name or None):
        try:
            for i, text in enumerate(block.record_texts()):
                meta, _ = blocks.meta_and_input(text)
                kind, cid = blocks.kind_of(meta)
                if cid is not None:
                    want.add((_key(cid), name, block.first_seq + i, kind))
        except (ValueError, BlockError):
            continue
    got = {(k, c, int(s), kind) for k, c, s, kind in store._query(store._sql(
        "SELECT case_id, chain, seq, kind FROM audit_case_index WHERE chain = ?"), (name,))}
    for key, _, seq, kind in sorted(want - got, key=lambda r: r[2])[:20]:
        add(seq, "index", f"record {seq} (case {key}, {KIND_NAMES.get(kind, kind)}) has no index row by case id: "
            "it was deleted or changed")
    for key, _, seq, kind in sorted(got - want, key=lambda r: r[2])[:20]:
        add(seq, "index", f"an index row says case {key} has a {KIND_NAMES.get(kind, kind)} at record {seq}, which "
            "no record says: it was added or changed")
