"""Record version 2: compact records, many to a block, hash-chained inside the block and block to block.

A record is what replay needs and a reference to the rest: a short canonical JSON *meta* (the
compact decision: kind, status, outcome, rule, values, and where present queue, referral,
missing fields, errors, the record a decision supersedes, a personal-data note), a newline,
and the case input as received (a batch's raw line; a library caller's canonical JSON). The
released decision JSON — with reasons, basis and the parameters in force — is not stored: it
is re-rendered from the stored ruleset source, and the record keeps its SHA-256, so the log
still commits to every byte a citizen or a system was given. (``keep_released`` stores the
full JSON too; human decisions and manifests always keep theirs.)

Hashes, per record ``i`` of a block (``released_i``: the SHA-256 of the released JSON)::

    leaf_i  = SHA-256(released_i || record_i)
    link_i  = SHA-256(link_{i-1} || leaf_i)          link_0 = SEED
    digests = released_i (32 bytes) || leaf_i[:4] || link_i[:4]    for each record, in order
    hash    = SHA-256(prev_hash || "\\n" || header || "\\n" || hex(link_n))

``header`` is the block's canonical JSON (chain, first and last sequence number, time,
codec, engine version). The block hash chains blocks as version 1 chained records; the
stored per-record prefixes only locate a change: a record edited without its digests
updated fails its own ``leaf``; one whose digests were recomputed leaves its successor's
``link`` broken while that successor's ``leaf`` still holds — so ``verify`` names the exact
record either way. Workers build whole blocks (records, digests, the tail link); the one
writer only computes ``hash`` when it links the block after the head.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

RECORD_VERSION = 2
SEED = hashlib.sha256(b"vedtak audit block, record version 2").digest()
DIGEST = 40  # bytes of digests per record: released (32) + leaf prefix (4) + link prefix (4)
LOCATE = 4  # bytes of each leaf and link kept: they locate a change; the block hash (full) detects it
_sha = hashlib.sha256

KIND_CODES = {"decision": "d", "referral": "r", "rejection": "j", "human": "h", "manifest": "m"}
KIND_NAMES = {v: k for k, v in KIND_CODES.items()}
_KIND_KEYS = tuple(code.upper() for code in KIND_NAMES)
_KIND_KEY_SET = frozenset(_KIND_KEYS)
_KIND_OF_KEY = {key: key.lower() for key in _KIND_KEYS}

try:  # optional block compression (vedtak[zstd])
    import zstandard as _zstd
except ImportError:  # pragma: no cover - exercised where zstandard is not installed
    _zstd = None

CODECS = ("none", "zstd")


class BlockError(ValueError):
    """A stored block that cannot be decoded (its codec, framing or digests are not as written)."""


def compress_check(codec: str) -> None:
    """BlockError if this codec cannot be written here (zstd without the zstandard package)."""
    if codec == "zstd" and _zstd is None:
        raise BlockError("block compression zstd needs the zstandard package: pip install 'vedtak[zstd]'")


def compress(data: bytes, codec: str) -> bytes:
    if codec == "none":
        return data
    if codec == "zstd":
        if _zstd is None:
            raise BlockError("block compression zstd needs the zstandard package: pip install 'vedtak[zstd]'")
        return _zstd.ZstdCompressor(level=3, write_checksum=True).compress(data)
    raise BlockError(f"unknown block codec {codec!r}")


def decompress(data: bytes, codec: str) -> bytes:
    if codec == "none":
        return bytes(data)
    if codec == "zstd":
        if _zstd is None:
            raise BlockError("this block is compressed with zstd: pip install 'vedtak[zstd]' to read it")
        try:
            reader = _zstd.ZstdDecompressor().decompressobj()
            out = reader.decompress(bytes(data))
        except _zstd.ZstdError as exc:
            raise BlockError(f"its zstd data is damaged ({exc})") from None
        if not reader.eof or reader.unused_data:  # one frame, exactly: nothing may follow it
            raise BlockError("its zstd data does not end where its frame does (bytes were added or cut)")
        return out
    raise BlockError(f"unknown block codec {codec!r}")


class BlockBuilder:
    """Records of one block, in order, with their digests and the block's inner chain."""

    __slots__ = ("records", "digests", "link", "case_keys", "kinds")

    def __init__(self) -> None:
        self.records: list[bytes] = []
        self.digests = bytearray()
        self.link = SEED
        self.case_keys: list[str | None] = []  # the index key of each record's case id
        self.kinds: list[str] = []

    def add(self, record: bytes, released: bytes, case_key: str | None, kind: str) -> None:
        leaf = _sha(released + record).digest()
        self.link = link = _sha(self.link + leaf).digest()
        self.digests += released + leaf[:4] + link[:4]
        self.records.append(record)
        self.case_keys.append(case_key)
        self.kinds.append(kind)

    def __len__(self) -> int:
        return len(self.records)

    def replace(self, index: int, record: bytes, released: bytes, case_key: str | None, kind: str) -> None:
        """Put another record at ``index`` (a case the writer settled otherwise) and re-link the rest."""
        self.records[index] = record
        self.case_keys[index] = case_key
        self.kinds[index] = kind
        self.digests[index * DIGEST:index * DIGEST + 32] = released
        self._relink(index)

    def drop(self, indexes: set[int]) -> None:
        """Leave these records out (cases released again from the log rather than recorded)."""
        if not indexes:
            return
        first = min(indexes)
        keep = [i for i in range(len(self.records)) if i not in indexes]
        self.records = [self.records[i] for i in keep]
        self.case_keys = [self.case_keys[i] for i in keep]
        self.kinds = [self.kinds[i] for i in keep]
        self.digests = bytearray(b"".join(bytes(self.digests[i * DIGEST:(i + 1) * DIGEST]) for i in keep))
        self._relink(sum(1 for i in keep if i < first))

    def _relink(self, start: int) -> None:
        link = SEED if start == 0 else None
        if link is None:  # recompute up to start (the stored prefixes cannot continue the chain)
            link = SEED
            for i in range(start):
                link = _sha(link + _sha(bytes(self.digests[i * DIGEST:i * DIGEST + 32]) + self.records[i]).digest()).digest()
        for i in range(start, len(self.records)):
            released = bytes(self.digests[i * DIGEST:i * DIGEST + 32])
            leaf = _sha(released + self.records[i]).digest()
            link = _sha(link + leaf).digest()
            self.digests[i * DIGEST + 32:(i + 1) * DIGEST] = leaf[:4] + link[:4]
        self.link = link

    def payload(self) -> bytes:
        """The records, each prefixed by its length (a varint: 7 bits a byte, low bits first)."""
        parts: list = [b""] * (2 * len(self.records))
        parts[0::2] = [_VARINT_OF.get(len(r)) or _varint(len(r)) for r in self.records]
        parts[1::2] = self.records
        return b"".join(parts)


def header(chain: str | None, first_seq: int, last_seq: int, recorded_at: str, codec: str, engine: str,
           rulesets: list[str]) -> str:
    """The block's header: what the block hash commits to beside its records."""
    return json.dumps({"chain": chain, "codec": codec, "engine_version": engine, "first_seq": first_seq,
                       "last_seq": last_seq, "recorded_at": recorded_at, "record_version": RECORD_VERSION,
                       "rulesets": rulesets},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def block_hash(prev_hash: str, header_text: str, link: bytes) -> str:
    return _sha(f"{prev_hash}\n{header_text}\n{link.hex()}".encode("utf-8")).hexdigest()


def split_records(payload: bytes) -> list[bytes]:
    """The records of a block's (decompressed) payload; BlockError if its framing is broken."""
    out, pos, end = [], 0, len(payload)
    append = out.append
    while pos < end:
        # the common lengths first: one byte (< 128) or two (< 16 384)
        b0 = payload[pos]
        if b0 < 0x80:
            n, pos = b0, pos + 1
        elif pos + 1 < end and 0 < payload[pos + 1] < 0x80:
            n, pos = (b0 & 0x7F) | (payload[pos + 1] << 7), pos + 2
        else:
            n = -1
        if n >= 0 and pos + n <= end:
            append(payload[pos:pos + n])
            pos += n
            continue
        n = shift = 0
        while True:
            if pos >= end or shift > 28:
                raise BlockError("its records end in the middle of a length")
            byte = payload[pos]
            pos += 1
            n |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                if byte == 0 and shift > 7:  # a length is written in as few bytes as it takes
                    raise BlockError("a record length is not written as the log writes it")
                break
        if pos + n > end:
            raise BlockError("a record runs past the end of the block")
        out.append(payload[pos:pos + n])
        pos += n
    return out


_VARINTS = [bytes([n]) for n in range(128)]
_VARINT_OF: dict[int, bytes] = dict(enumerate(_VARINTS))  # and each longer length once met


def _varint(n: int) -> bytes:
    found = _VARINT_OF.get(n)
    if found is not None:
        return found
    if n < 128:
        return _VARINTS[n]
    m, out = n, bytearray()
    while n >= 128:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    found = bytes(out)
    if len(_VARINT_OF) < 65536:
        _VARINT_OF[m] = found
    return found


def kind_of(meta) -> tuple[str | None, object]:
    """A record meta's kind code and case id: the one member named by an upper-case kind letter
    (``{"D": 17, ...}``: a decision of case 17). (None, None) when the meta has no single kind."""
    if type(meta) is not dict:
        return None, None
    found = _KIND_KEY_SET.intersection(meta)
    if len(found) != 1:
        return None, None
    (key,) = found
    return _KIND_OF_KEY[key], meta[key]


@dataclass(frozen=True)
class StoredBlock:
    """One row of ``audit_blocks``, as read back."""

    chain: str | None
    first_seq: int
    last_seq: int
    recorded_at: str
    header: str
    records: bytes
    digests: bytes
    prev_hash: str
    hash: str

    def codec(self) -> str:
        try:
            return str(json.loads(self.header).get("codec", "none"))
        except (ValueError, AttributeError):
            return "none"

    def record_texts(self) -> list[bytes]:
        return split_records(decompress(self.records, self.codec()))


def meta_and_input(record: bytes) -> tuple[dict, bytes]:
    """A record's meta (the compact decision) and its input bytes; ValueError if malformed."""
    meta, sep, data = record.partition(b"\n")
    if not sep:
        raise ValueError("the record has no input part")
    value = json.loads(meta)
    if not isinstance(value, dict):
        raise ValueError("the record's meta is not a JSON object")
    return value, data
