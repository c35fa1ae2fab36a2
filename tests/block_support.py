"""Tampering with version 2 blocks by SQL, as a forger with write access to the database would.

Each helper reads one row of ``audit_blocks``, decodes its records (engine/audit/blocks.py),
changes them, re-frames them with their 4-byte lengths and writes the row back; digests and
hashes are recomputed only where a helper's caller asks for it ("recomputed").
"""

from __future__ import annotations

import hashlib
import json

from vedtak.audit import blocks
from vedtak.audit.blocks import DIGEST, SEED

from audit_support import raw

_sha = hashlib.sha256
LOCATE = (DIGEST - 32) // 2  # bytes of each record's leaf and link kept beside its released SHA-256


def block_at(url: str, seq: int, chain: str = "") -> dict:
    """The block holding record ``seq`` (by its columns), its records decoded."""
    ((first, last, at, header, data, digests, prev, hash_),) = raw(
        url, "SELECT first_seq, last_seq, recorded_at, header, records, digests, prev_hash, hash FROM audit_blocks "
             "WHERE chain = ? AND first_seq <= ? AND last_seq >= ?", (chain, seq, seq))
    codec = json.loads(header).get("codec", "none")
    return {"first": int(first), "last": int(last), "at": at, "header": header, "codec": codec,
            "records": blocks.split_records(blocks.decompress(bytes(data), codec)), "digests": bytes(digests),
            "prev": prev, "hash": hash_}


def frame(records: list[bytes], codec: str = "none") -> bytes:
    """Records as a block stores them: each prefixed by its length, compressed if the block is."""
    builder = blocks.BlockBuilder()
    builder.records = list(records)
    return blocks.compress(builder.payload(), codec)


def write_block(url: str, block: dict, chain: str = "", **columns) -> None:
    """Write a (changed) block back over the row it was read from; ``columns`` override its columns."""
    values = {"records": frame(block["records"], block["codec"]), "digests": block["digests"], **columns}
    sets = ", ".join(f"{name} = ?" for name in values)
    raw(url, f"UPDATE audit_blocks SET {sets} WHERE chain = ? AND first_seq = ?",
        (*values.values(), chain, block["first"]))


def digest_entry(released: bytes, record: bytes, link: bytes) -> tuple[bytes, bytes]:
    """(48 bytes of digests, full link) of one record following ``link``."""
    leaf = _sha(released + record).digest()
    new_link = _sha(link + leaf).digest()
    return released + leaf[:LOCATE] + new_link[:LOCATE], new_link


def full_link(block: dict, upto: int) -> bytes:
    """The full inner link after the first ``upto`` records of a block (recomputed from its records)."""
    link = SEED
    for i in range(upto):
        released = block["digests"][i * DIGEST:i * DIGEST + 32]
        link = _sha(link + _sha(released + block["records"][i]).digest()).digest()
    return link


def set_digest(block: dict, index: int, entry: bytes) -> None:
    d = bytearray(block["digests"])
    d[index * DIGEST:(index + 1) * DIGEST] = entry
    block["digests"] = bytes(d)


def edit_record(url: str, seq: int, change, *, recompute: bool = False, chain: str = "") -> None:
    """Apply ``change(meta: dict) -> None`` to record ``seq``'s meta (its compact decision); with
    ``recompute``, its own digests (leaf and link) are recomputed as a forger who knows the format would
    (the ones after it are not)."""
    block = block_at(url, seq, chain)
    i = seq - block["first"]
    meta, data = blocks.meta_and_input(block["records"][i])
    change(meta)
    record = json.dumps(meta, separators=(",", ":"), ensure_ascii=False).encode() + b"\n" + data
    assert record != block["records"][i], "the change changed nothing"
    block["records"][i] = record
    if recompute:
        released = block["digests"][i * DIGEST:i * DIGEST + 32]
        entry, _ = digest_entry(released, record, full_link(block, i))
        set_digest(block, i, entry)
    write_block(url, block, chain)


def rehash_from(url: str, first: int, chain: str = "") -> None:
    """Recompute every block hash and prev_hash from the block starting at ``first`` to the chain's end
    and move the head: a forger covering a change as far as the hashes reach (not a signed checkpoint)."""
    rows = raw(url, "SELECT first_seq, last_seq, header, records, digests, prev_hash FROM audit_blocks "
                    "WHERE chain = ? AND first_seq >= ? ORDER BY first_seq", (chain, first))
    prev = rows[0][5]
    for f, last, header, data, digests, _ in rows:
        block = {"records": blocks.split_records(blocks.decompress(bytes(data), json.loads(header)["codec"])),
                 "digests": bytes(digests)}
        hash_ = blocks.block_hash(prev, header, full_link(block, len(block["records"])))
        raw(url, "UPDATE audit_blocks SET prev_hash = ?, hash = ? WHERE chain = ? AND first_seq = ?",
            (prev, hash_, chain, f))
        prev, end = hash_, last
    if chain:
        raw(url, "UPDATE audit_chains SET seq = ?, hash = ? WHERE chain = ?", (end, prev, chain))
    else:
        raw(url, "UPDATE audit_head SET seq = ?, hash = ?", (end, prev))


def replace_values(meta, old, new) -> None:
    """Replace every value ``old`` in a record's meta (at any depth) by ``new``."""
    items = meta.items() if isinstance(meta, dict) else enumerate(meta)
    for key, value in list(items):
        if value == old and type(value) is type(old):
            meta[key] = new
        elif isinstance(value, (dict, list)):
            replace_values(value, old, new)


def find_value(meta, name: str):
    """The first value of member ``name`` at any depth of a record's meta (None if there is none)."""
    if isinstance(meta, dict):
        if name in meta:
            return meta[name]
        values = meta.values()
    elif isinstance(meta, list):
        values = meta
    else:
        return None
    for value in values:
        found = find_value(value, name)
        if found is not None:
            return found
    return None
