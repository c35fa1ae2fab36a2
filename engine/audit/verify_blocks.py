"""Verifying a chain's version 2 blocks: every record, every digest, every block link and index row.

For each block, in order: its columns against its header (which the block hash commits to) —
blocks whose seq columns were shifted together after a record was removed or added are
followed, a block holding another block's numbers is named as moved (``reordered``), a block
the next one skips over (it follows the block two back) as ``inserted``; its place in the
chain (missing records are named ``deleted``); then each record's digests, in one pass. Only
when something does not hold does :func:`_locate` look closer and name the exact record: a
record whose content does not match its own leaf is ``edited``; a record whose leaf holds but
whose link does not names its predecessor, changed with its digests recomputed — unless the
records after it are the same records in another order (``reordered``), or the block holds
fewer or more records than its header says (the first that no longer follows its
predecessor was ``deleted`` or ``inserted``). Then the block hash: a block whose own hash
holds but that does not follow the one before it names that one, changed with its hashes
recomputed. Times must not decrease (``backdated``). Index rows by case id are checked
against the records: a multiset digest over (case, chain, seq, kind) of both sides, and
when they differ, row by row, naming what is missing or was added (not again inside a
block whose records were named already).
"""

from __future__ import annotations

import hashlib
import json

import msgspec

from ..evaluation.decision import canonical_json
from . import blocks
from .compact import item_digest
from .record import case_key
from .blocks import _KIND_KEY_SET, _KIND_OF_KEY, DIGEST, KIND_CODES, KIND_NAMES, LOCATE, SEED, BlockError

_sha = hashlib.sha256
_decode = msgspec.json.Decoder().decode
_MASK = (1 << 128) - 1
_blake = hashlib.blake2b


def _row_digest(key, chain, seq, kind) -> int:
    """One index row as a number: a keyed-free BLAKE2b of its values *and their types* (a case id
    stored as bytes, a sequence number as text or out of range differ), summed over a chain's rows
    and compared with the sum its records imply (the same in every run of verify)."""
    # the reprs of str, bytes and int tell the types apart and delimit themselves
    text = f"{key!r}{chain!r}{seq!r}{kind!r}"
    return int.from_bytes(_blake(text.encode("utf-8", "surrogatepass"), digest_size=16).digest(), "big")


def check_blocks(store, chain: str | None, start: tuple[int, str], add, report, rulesets, facts,
                 last_time: str = "") -> tuple[int, str]:
    """Check the blocks of one chain following (seq, hash) ``start`` (the chain's version 1 records'
    end); feed ``facts`` (engine/audit/verify.py) with what its records commit to; returns the last
    (seq, hash)."""
    seq, prev = start
    flagged = add.flagged
    expected_index = 0
    name = chain or ""
    shift = 0  # column numbering minus header numbering: records removed or added renumber the blocks after
    damaged: list[tuple[int, int]] = []  # blocks whose records were named: their index rows follow from that
    before = (seq or None, f"record {seq}")  # the block (or version 1 record) before: (first seq, name)
    older = None  # the hash before the block before
    for row in store._query(store._sql(
            f"SELECT {store.VERIFY_COLUMNS} FROM audit_blocks WHERE chain = ? ORDER BY first_seq"), (name,)):
        col_chain, first, last, at, head_text, data, digests, prev_col, hash_, stored_as_bytes = row
        if not stored_as_bytes:  # the same bytes stored as another type: readers would fail on it
            data = digests = None
        try:
            # every column but the numbers is read as bytes (a value forged as text that is not UTF-8
            # must not stop the reading): the text ones are decoded here, strictly
            col_chain, at, head_text, prev_col, hash_ = (
                v.decode("utf-8") if isinstance(v, (bytes, memoryview)) and not isinstance(v, str) else v
                for v in (col_chain if not isinstance(col_chain, memoryview) else bytes(col_chain),
                          at if not isinstance(at, memoryview) else bytes(at),
                          head_text if not isinstance(head_text, memoryview) else bytes(head_text),
                          prev_col if not isinstance(prev_col, memoryview) else bytes(prev_col),
                          hash_ if not isinstance(hash_, memoryview) else bytes(hash_)))
        except UnicodeDecodeError:
            col_chain = at = head_text = prev_col = hash_ = None
        try:
            if not all(isinstance(v, (bytes, memoryview)) for v in (data, digests)) or \
                    not all(type(v) is int for v in (first, last)) or \
                    not all(isinstance(v, str) for v in (at, head_text, prev_col, hash_)):
                raise TypeError("a column holds a value of the wrong type")
            data, digests = bytes(data), bytes(digests)
        except TypeError as exc:
            at_seq = first if type(first) is int else seq + 1
            add(at_seq, "edited", f"the block after record {seq} was changed: {exc} (first_seq {first!r})")
            report.records += last - first + 1 if type(last) is int and type(first) is int else 0
            if type(last) is int:
                seq = last
            continue
        where = _span(first, last)
        try:
            head = json.loads(head_text)
            if not isinstance(head, dict) or type(head.get("first_seq")) is not int \
                    or type(head.get("last_seq")) is not int:
                raise ValueError("not an object")
            texts = blocks.split_records(blocks.decompress(data, str(head.get("codec", "none"))))
        except ValueError as exc:  # BlockError too
            why = f"cannot be read: {exc}" if isinstance(exc, BlockError) else "its header is not valid (changed)"
            add(first, "edited", f"the block of {where} {why}")
            report.records += max(last - first + 1, 0)
            damaged.append((first, last))
            seq, older, prev, before = last, prev, hash_, (first, f"block of {where}")
            continue
        report.records += len(texts)
        h_first, h_last = head["first_seq"], head["last_seq"]
        for col, have, said in (("chain", chain, head.get("chain")), ("recorded_at", at, head.get("recorded_at"))):
            if have != said:
                add(first, "edited", f"the block of {where}: column {col} was changed ({have!r}, its header "
                    f"says {said!r})")
                break
        if len(texts) != last - first + 1 and len(texts) == h_last - h_first + 1:
            add(first, "edited", f"the block of {where}: column last_seq was changed ({last}, its header says "
                f"{h_last})")
            last = first + len(texts) - 1
        if first - h_first != shift:  # not as the blocks before it were numbered
            if first - h_first == last - h_last and prev_col == older and before[0] not in flagged \
                    and before[1].startswith("block"):  # it follows the block two back: the one between was put in
                add(before[0], "inserted", f"the {before[1]} was inserted: the block now of {where} (written as "
                    f"{_span(h_first, h_last)}) follows the block before it")
                shift = first - h_first
            elif first - h_first == last - h_last:
                add(first, "reordered", f"{where} hold the block written as {_span(h_first, h_last)}: blocks "
                    "were moved")
            else:
                add(first, "edited", f"the block of {where}: column first_seq was changed ({first}, its header "
                    f"says {h_first})")
        else:  # a block that lost or gained records renumbers the ones after it (named in the block)
            shift = last - h_last
        gap = first > seq + 1
        if gap:
            add(seq + 1, "deleted", f"{_span(seq + 1, first - 1)} {'are' if first > seq + 2 else 'is'} missing")
        elif first < seq + 1:
            add(first, "inserted", f"the block of {where} overlaps records before it")
        link, broken = SEED, False
        rulesets_of = head.get("rulesets") or []
        later = []  # records whose facts are noted once the block's own problems are known
        for i, text in enumerate(texts):
            at_seq = first + i
            d = digests[i * DIGEST:(i + 1) * DIGEST]
            leaf = _sha(d[:32] + text).digest()
            link = _sha(link + leaf).digest()
            if not broken and (leaf[:LOCATE] != d[32:32 + LOCATE] or link[:LOCATE] != d[32 + LOCATE:DIGEST]):
                broken = True
            end_meta = text.find(b"\n")
            try:
                meta = _decode(text[:end_meta]) if end_meta > 0 else None
                found = _KIND_KEY_SET.intersection(meta) if type(meta) is dict else ()
                if len(found) == 1:
                    (kind_key,) = found
                    kind, cid = _KIND_OF_KEY[kind_key], meta[kind_key]
                else:
                    kind = cid = None
            except (msgspec.DecodeError, UnicodeDecodeError):
                kind = cid = None
            if kind not in KIND_NAMES:
                later.append((at_seq, None, None, None, None))
                continue
            if cid is not None:
                key = case_key(cid)
                expected_index = (expected_index + _row_digest(key, name, at_seq, kind)) & _MASK
            if kind == "d" and "x" not in meta:
                continue
            later.append((at_seq, meta, kind, cid, text[end_meta + 1:]))
        blamed = broken or len(texts) != h_last - h_first + 1 or len(digests) != len(texts) * DIGEST
        suspect: set = set()  # records of the block whose content is not as written (their facts are not noted)
        if blamed:
            blamed, suspect = _locate(first, texts, digests, h_last - h_first + 1, where, add)
            if blamed:
                damaged.append((first, max(last, first + len(texts) - 1)))
        for at_seq, meta, kind, cid, data in later:
            if at_seq - first in suspect:
                continue
            if meta is None:
                add(at_seq, "edited", f"record {at_seq} is malformed (changed): it is not a version 2 record")
                continue
            try:
                n = meta.get("n", 0)
                sha = rulesets_of[n] if type(n) is int and 0 <= n < len(rulesets_of) else None
                _facts(facts, meta, kind, cid, at_seq, chain, at, sha, data, rulesets)
            except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
                add(at_seq, "edited", f"record {at_seq} was forged or changed: {exc}")
        for sha in head.get("rulesets") or []:
            rulesets.check(sha if isinstance(sha, str) else None, first, add)
        intact = not blamed and blocks.block_hash(prev_col, head_text, link) == hash_
        if prev_col != prev and not gap and first not in flagged:
            if intact and before[0] is not None:  # this block is as written: what is now before it is not
                if before[0] not in flagged:
                    add(before[0], "edited", f"the {before[1]} was changed and its hashes recomputed (or replaced): "
                        f"the block of {where} no longer follows it")
            else:
                add(first, "broken_chain", f"the block of {where} does not follow the record before it (its "
                    "prev_hash was changed)")
        if not intact and not blamed and first not in flagged:
            add(first, "edited", f"the block of {where}: its hash does not match its header and records "
                "(changed, or its hash replaced)")
        if isinstance(at, str) and at < last_time and first not in flagged:
            add(first, "backdated", f"{where} recorded at {at}, earlier than the record before it ({last_time}): "
                "written out of order or back-dated")
        last_time = max(last_time, at) if isinstance(at, str) else last_time
        seq, older, prev, before = last, prev, hash_, (first, f"block of {where}")
    _check_index(store, name, expected_index, add, damaged)
    facts.ends[chain] = seq
    return seq, prev


def _span(first: int, last: int) -> str:
    return f"record {first}" if first == last else f"records {first} to {last}"


def _locate(first: int, texts: list, digests: bytes, written: int, where: str, add) -> tuple[bool, set]:
    """Name the records of a block whose digests do not hold, or which were removed, added or swapped;
    ``written``: how many records its header says it holds. Returns whether a record was named, and the
    positions of the records whose content is not as written (edited or inserted)."""
    n = len(texts)
    if len(digests) != n * DIGEST:
        add(first, "edited", f"the block of {where} holds {n} records and {len(digests) / DIGEST:g} digests, not "
            f"{written}: its records or digests were changed")
        return True, set()
    stored = [digests[i * DIGEST:(i + 1) * DIGEST] for i in range(n)]
    leaves = [_sha(d[:32] + t).digest() for d, t in zip(stored, texts)]
    links = [SEED]  # links[i]: the full link before record i, while the stored prefixes hold
    broken = None
    for i in range(n):
        link = _sha(links[i] + leaves[i]).digest()
        if leaves[i][:LOCATE] != stored[i][32:32 + LOCATE] or link[:LOCATE] != stored[i][32 + LOCATE:]:
            broken = i
            break
        links.append(link)
    if n != written and broken is not None and leaves[broken][:LOCATE] != stored[broken][32:32 + LOCATE]:
        add(first + broken, "edited", f"record {first + broken} was changed: its content does not match its hash")
        add(first + broken + 1, "deleted" if n < written else "inserted",
            f"{abs(n - written)} record{'s' if abs(n - written) > 1 else ''} "
            f"{'removed from' if n < written else 'added to'} "
            f"the block of {where} (written with {written} records) after record {first + broken}, which was changed: "
            "where, its hashes cannot tell")
        return True, set(range(broken, n))
    if n != written:
        k = abs(n - written)
        if n < written:  # removed: the first record that no longer follows its predecessor is where
            at = n if broken is None else broken
            add(first + at, "deleted", f"{_span(first + at, first + at + k - 1)} {'were' if k > 1 else 'was'} removed "
                f"from the block of {where} (written with {written} records)")
            return True, set()
        at = written if broken is None else broken
        for c in (broken - 1, broken) if broken else ():  # the one whose successor follows its predecessor
            after = c + k
            if c >= 0 and (after >= n
                           or _sha(links[c] + leaves[after]).digest()[:LOCATE] == stored[after][32 + LOCATE:]):
                at = c
                break
        add(first + at, "inserted", f"{_span(first + at, first + at + k - 1)} {'were' if k > 1 else 'was'} inserted "
            f"into the block of {where} (written with {written} records)")
        return True, set(range(at, at + k))
    if broken is None:
        return False, set()
    if leaves[broken][:LOCATE] != stored[broken][32:32 + LOCATE]:
        add(first + broken, "edited", f"record {first + broken} was changed: its content does not match its hash")
        return True, {broken}
    order = _reorder(leaves, stored, broken, links[broken])
    if order is not None:
        for now, was in sorted((now, was) for was, now in enumerate(order, broken) if now != was):
            add(first + now, "reordered", f"record {first + now} is the record written as {first + was}: records "
                "were swapped")
        return True, set()
    if broken:
        add(first + broken - 1, "edited", f"record {first + broken - 1} was changed and its hashes recomputed: "
            f"record {first + broken} no longer follows it")
        return True, {broken - 1}
    add(first, "edited", f"record {first}: its chain hash was changed")
    return True, {0}


def _reorder(leaves: list, stored: list, start: int, link: bytes, limit: int = 4096) -> list | None:
    """The positions, from ``start`` on, that the records written there now hold (each record's stored
    link prefix names its predecessor), or None if they are not the same records reordered."""
    left = list(range(start, len(leaves)))
    if len(left) > limit or any(leaves[j][:LOCATE] != stored[j][32:32 + LOCATE] for j in left):
        return None
    order = []
    while left:
        for j in left:
            nxt = _sha(link + leaves[j]).digest()
            if nxt[:LOCATE] == stored[j][32 + LOCATE:]:
                break
        else:
            return None
        order.append(j)
        left.remove(j)
        link = nxt
    return order


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
                  "ruleset": None if sha is None else {"sha256": sha},
                  "input": json.loads(data) if kind == "m" else None}  # a manifest commits to its input
        record_facts(facts, record, seq, chain, rulesets)
        return
    key = case_key(cid)
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


def _check_index(store, name: str, expected: int, add, damaged: list[tuple[int, int]]) -> None:
    """The index rows of one chain against the digest of what its records say they must be; rows of
    ``damaged`` blocks (whose records were named as removed, added, swapped or changed) are not named again."""
    have = 0
    rows = store._query(store._sql(f"SELECT {store.INDEX_VERIFY_COLUMNS} FROM audit_case_index WHERE chain = ?"),
                        (name,))
    for key, chain, seq, kind in rows:
        have = (have + _row_digest(key, chain, seq, kind)) & _MASK
    if have == expected:
        return
    try:
        _name_index_rows(store, name, add, damaged)
    except Exception as exc:  # noqa: BLE001 - blocks too damaged to list their rows (named already): never a crash
        add(0, "index", f"the index rows by case id of chain {name or 'main'} differ from its records ({exc})")


def _name_index_rows(store, name: str, add, damaged: list[tuple[int, int]]) -> None:
    # they differ: name the rows, comparing them one by one
    want: set = set()
    for row in store._query(store._sql(f"SELECT {store.VERIFY_COLUMNS} FROM audit_blocks WHERE chain = ? "
                                       "ORDER BY first_seq"), (name,)):
        try:
            head_text = row[4] if isinstance(row[4], str) else bytes(row[4]).decode("utf-8")  # PostgreSQL: text
            first, head = row[1], json.loads(head_text)
            for i, text in enumerate(blocks.split_records(blocks.decompress(bytes(row[5]),
                                                                            str(head.get("codec", "none"))))):
                meta, _ = blocks.meta_and_input(text)
                kind, cid = blocks.kind_of(meta)
                if cid is not None:
                    want.add((case_key(cid), name, first + i, kind))
        except (ValueError, TypeError, AttributeError, BlockError):  # a damaged block: named already
            continue
    got = {(k, c, s, kind) for k, c, s, kind in store._query(store._sql(
        f"SELECT {store.INDEX_VERIFY_COLUMNS} FROM audit_case_index WHERE chain = ?"), (name,))}
    def named(row) -> bool:
        return any(a <= row[2] <= b for a, b in damaged)

    want = {r for r in want if not named(r)}
    got = {r for r in got if not named(r)}
    for key, _, seq, kind in sorted(want - got, key=lambda r: r[2])[:20]:  # records' seqs: ints
        add(seq, "index", f"record {seq} (case {key}, {KIND_NAMES.get(kind, kind)}) has no index row by case id: "
            "it was deleted or changed")
    for key, _, seq, kind in sorted(got - want, key=lambda r: r[2] if type(r[2]) is int else -1)[:20]:
        add(seq if type(seq) is int and 0 < seq < 1 << 62 else 0, "index",
            f"an index row says case {key!r} has a {KIND_NAMES.get(kind, kind)} at record {seq!r}, which no record "
            "says: it was added or changed")
