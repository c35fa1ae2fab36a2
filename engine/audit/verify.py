"""Verifying an audit log: recompute the chain and name the first record that is not as written.

Detects a record whose content was edited (with or without recomputing its hash), a
deleted, inserted or reordered record, a head that does not match the last record (a
truncated tail), a stored ruleset whose source no longer matches its SHA-256, and — given
a signed checkpoint — a tail truncated together with the head.

A distributed run's partition chains are checked the same way, each against its own head,
and then against the run's manifest on the main chain, which committed to every partition
chain's record count and last hash: a partition deleted, cut short or rewritten with its
head is named by the manifest. A run without a manifest yet is reported as unfinished.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

from ..decision import canonical_json
from .record import GENESIS, record_ref, sha256, utc_now
from .store import AuditStore, case_key

MAX_PROBLEMS = 1000


@dataclass(frozen=True, order=True)
class Problem:
    """One inconsistency: the sequence number it concerns, what kind it is, and an explanation."""

    seq: int
    kind: str  # edited, deleted, inserted, reordered, broken_chain, truncated, ruleset, checkpoint, partition
    message: str
    chain: str = ""  # the partition chain it concerns; "" for the main chain

    @property
    def ref(self) -> str:
        return record_ref(self.seq, self.chain or None)


@dataclass
class VerifyReport:
    records: int = 0
    head: tuple[int, str] = (0, GENESIS)
    problems: list[Problem] = field(default_factory=list)
    checkpoint: dict | None = None
    chains: int = 0  # partition chains verified
    runs: int = 0  # distributed runs whose manifest was checked
    unfinished: list[str] = field(default_factory=list)  # runs with partition chains and no manifest yet

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad(self) -> int | None:
        main = [p.seq for p in self.problems if not p.chain]
        return min(main) if main else min(p.seq for p in self.problems) if self.problems else None

    def to_dict(self) -> dict:
        return {"ok": self.ok, "records": self.records, "head": {"seq": self.head[0], "hash": self.head[1]},
                "first_bad_seq": self.first_bad, "partition_chains": self.chains, "runs": self.runs,
                "unfinished_runs": self.unfinished,
                "problems": [{"seq": p.seq, "kind": p.kind, "message": p.message, **({"chain": p.chain} if p.chain
                                                                                      else {})}
                             for p in sorted(self.problems)]}


class _Problems:
    """Collects one chain's problems (up to MAX_PROBLEMS in all) and which records they flag."""

    def __init__(self, problems: list[Problem], chain: str):
        self.problems, self.chain, self.flagged = problems, chain, set()

    def __call__(self, seq: int, kind: str, message: str) -> None:
        self.flagged.add(seq)
        if len(self.problems) < MAX_PROBLEMS:
            text = f"partition chain {self.chain}: {message}" if self.chain else message
            self.problems.append(Problem(seq, kind, text, self.chain))


class _Rulesets:
    """The stored ruleset sources, checked against their SHA-256 once; each bad one reported once."""

    def __init__(self, store: AuditStore):
        self.stored = {rs.sha256: rs for rs in store.rulesets()}
        self.bad = {sha for sha, rs in self.stored.items() if sha256(rs.source) != sha}
        self.reported: set[str] = set()

    def check(self, rs_sha: str | None, seq: int, add) -> None:
        if rs_sha is None or rs_sha in self.reported:
            return
        if rs_sha not in self.stored:
            add(seq, "ruleset", f"record {seq} names ruleset {rs_sha[:12]}, whose source is not in the log")
            self.reported.add(rs_sha)
        elif rs_sha in self.bad:
            rs = self.stored[rs_sha]
            add(seq, "ruleset", f"the stored source of ruleset {rs.ruleset_id} {rs.version} no longer matches "
                f"its SHA-256 {rs_sha[:12]}")
            self.reported.add(rs_sha)


def verify(store: AuditStore, *, checkpoint: dict | None = None, public_key: bytes | None = None) -> VerifyReport:
    """Recompute every hash and link of the log — the main chain and every partition chain of a
    distributed run — check each run's manifest against its partition chains, and optionally a
    signed checkpoint of the main chain's head."""
    report = VerifyReport(head=store.head())
    problems = report.problems

    def adder(chain: str) -> "_Problems":
        return _Problems(problems, chain)

    rulesets = _Rulesets(store)
    add = adder("")
    last_seq, last_hash, manifests = _check_chain(store.rows(), report.head, add, rulesets, report)
    if checkpoint is not None:
        report.checkpoint = checkpoint
        _check_checkpoint(store, checkpoint, public_key, last_seq, add)

    # partition chains: each on its own, then against the manifest of its run
    heads = {c.chain: c for c in store.chains()}
    ends: dict[str, tuple[int, int, str]] = {}  # chain -> (records, last seq, last hash)
    for name in store.chain_names():
        report.chains += 1
        info = heads.get(name)
        chain_add = adder(name)
        if info is None:
            chain_add(1, "partition", "the chain's head is missing (records of a chain the log does not list)")
        head = (info.seq, info.hash) if info is not None else (0, GENESIS)
        n_before = report.records
        end_seq, end_hash, _ = _check_chain(store.chain_rows(name), head, chain_add, rulesets, report, chain=name)
        ends[name] = (report.records - n_before, end_seq, end_hash)
    unfinished = {run_id for run_id, _, manifest_seq in store.runs() if manifest_seq is None}
    listed: set[str] = set()
    for seq, data in manifests:
        report.runs += 1
        run_id = data.get("run_id")
        for part in data.get("chains") or []:
            name = part.get("chain")
            listed.add(name)
            committed = (part.get("records"), part.get("records"), part.get("head"))
            if name not in ends:
                add(seq, "partition", f"manifest record {seq} of run {run_id}: partition chain {name} "
                    f"({part.get('records')} records) is missing from the log")
            elif ends[name] != committed:
                count, _, end_hash = ends[name]
                add(seq, "partition", f"manifest record {seq} of run {run_id}: partition chain {name} has "
                    f"{count} records ending in {end_hash[:16]}, the manifest committed to {part.get('records')} "
                    f"ending in {str(part.get('head'))[:16]}")
    for name in sorted(set(ends) - listed):
        info = heads.get(name)
        run_id = info.run_id if info is not None else name.split("/")[0]
        if run_id in unfinished:  # still running, or interrupted: --resume finishes it
            if run_id not in report.unfinished:
                report.unfinished.append(run_id)
        else:
            adder(name)(1, "inserted", "the chain belongs to no unfinished run and no manifest lists it")
    return report


def _check_chain(rows, head: tuple[int, str], add, rulesets: _Rulesets, report: VerifyReport,
                 chain: str | None = None) -> tuple[int, str, list]:
    """Check one chain's rows in order against its head; returns the last (seq, hash) and the
    manifests it holds as (seq, decision)."""
    flagged = add.flagged
    manifests = []
    expected, prev_hash, prev_prev_hash = 1, GENESIS, None
    last_seq, last_hash = 0, GENESIS
    for seq, recorded_at, kind, cid, input_sha, rs_sha, body, prev_col, hash_ in rows:
        seq = int(seq)
        report.records += 1
        if seq != expected:
            if seq > expected:
                gap = f"{expected}" if seq == expected + 1 else f"{expected} to {seq - 1}"
                add(expected, "deleted", f"record{'s' if seq > expected + 1 else ''} {gap} "
                    f"{'are' if seq > expected + 1 else 'is'} missing")
        if sha256(body) != hash_:
            add(seq, "edited", f"record {seq} was changed: its content does not match its hash")
        try:
            data = json.loads(body)
        except ValueError:
            add(seq, "edited", f"record {seq} is not valid JSON")
            prev_prev_hash, prev_hash, expected = prev_hash, hash_, seq + 1
            last_seq, last_hash = seq, hash_
            continue
        body_seq = data.get("seq")
        if body_seq != seq:
            if body_seq == seq - 1:
                add(seq - 1, "inserted", f"record {seq - 1} was inserted: the record now at {seq} was "
                    f"written as {body_seq}")
            elif body_seq == seq + 1:
                add(seq, "deleted", f"record {seq} was deleted and later records renumbered")
            else:
                add(seq, "reordered", f"record {seq} holds the record written as {body_seq}")
        elif data.get("prev_hash") != prev_hash and seq == expected and not flagged & {seq, seq - 1}:
            if prev_prev_hash is not None and data.get("prev_hash") == prev_prev_hash:
                add(seq - 1, "inserted", f"record {seq - 1} was inserted: record {seq} follows record {seq - 2}")
            elif seq > 1:
                add(seq - 1, "edited", f"record {seq - 1} was changed and its hash recomputed: record {seq} "
                    "names a different predecessor")
            else:
                add(seq, "broken_chain", "the first record does not start the chain")
        if data.get("chain") != chain:
            add(seq, "inserted", f"record {seq} was written to chain {data.get('chain') or 'main'}, not this one")
        columns = {"kind": (kind, data.get("kind")), "case_id": (cid, case_key(data.get("case_id"))),
                   "prev_hash": (prev_col, data.get("prev_hash")),
                   "recorded_at": (recorded_at, data.get("recorded_at")),
                   "ruleset_sha256": (rs_sha, (data.get("ruleset") or {}).get("sha256"))}
        if data.get("input") is not None:
            columns["input_sha256"] = (input_sha, sha256(canonical_json(data["input"])))
        for name, (col, val) in columns.items():
            if col != val:
                add(seq, "edited", f"record {seq}: column {name} was changed ({col!r}, the record says {val!r})")
                break
        rulesets.check(rs_sha, seq, add)
        if kind == "manifest" and chain is None and sha256(body) == hash_:
            manifests.append((seq, data.get("decision") or {}))
        prev_prev_hash, prev_hash, expected = prev_hash, hash_, seq + 1
        last_seq, last_hash = seq, hash_
    head_seq, head_hash = head
    if head_seq > last_seq:
        add(last_seq + 1, "truncated", f"the log ends at record {last_seq} but its head says {head_seq}")
    elif (head_seq, head_hash) != (last_seq, last_hash):
        add(min(head_seq, last_seq) or 1, "broken_chain",
            f"the head (record {head_seq}) does not match the last record ({last_seq})")
    return last_seq, last_hash, manifests


# -- signed checkpoints ----------------------------------------------------------------------

def _message(seq: int, hash_: str, signed_at: str) -> bytes:
    return json.dumps({"hash": hash_, "log": "vedtak-audit", "seq": seq, "signed_at": signed_at},
                      sort_keys=True, separators=(",", ":")).encode()


class KeyFileError(ValueError):
    """A file given as a key or a checkpoint that is not one: the other key of the pair, another kind, garbage."""


_KEYGEN = "`vedtak audit keygen --out PREFIX` writes PREFIX.key (private) and PREFIX.pub (public)"


def _key_type(key) -> str:
    return type(key).__name__.lstrip("_").removesuffix("PrivateKey").removesuffix("PublicKey") or "unknown"


def load_private_key(pem: bytes):
    """The Ed25519 private key in PEM text, or a KeyFileError saying what the file is instead."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    if b"PUBLIC KEY-----" in pem:
        raise KeyFileError(f"this is a public key; signing needs the private key ({_KEYGEN})")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:  # a password-protected key
        raise KeyFileError(f"the private key is encrypted with a password; use an unencrypted key ({_KEYGEN})") \
            from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(f"not a PEM private key ({_KEYGEN})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"the key is of type {_key_type(key)}; checkpoints are signed with Ed25519 keys "
                           f"({_KEYGEN})")
    return key


def load_public_key(pem: bytes):
    """The Ed25519 public key in PEM text, or a KeyFileError saying what the file is instead."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    if b"PRIVATE KEY-----" in pem:
        raise KeyFileError("this is a private key; verifying needs the public key (PREFIX.pub); keep the private "
                           "key secret")
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(f"not a PEM public key ({_KEYGEN})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"the key is of type {_key_type(key)}; checkpoints are signed with Ed25519 keys")
    return key


CHECKPOINT_FIELDS = {"seq": int, "hash": str, "signed_at": str, "signature": str}


def load_checkpoint(data: bytes) -> dict:
    """A signed checkpoint from its file's bytes, or a KeyFileError saying what the file is instead."""
    if b"-----BEGIN" in data and b"KEY-----" in data:
        raise KeyFileError("this is a key file, not a checkpoint (`vedtak audit checkpoint` writes one)")
    try:
        cp = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        cp = None
    if not isinstance(cp, dict) or any(type(cp.get(k)) is not t for k, t in CHECKPOINT_FIELDS.items()):
        raise KeyFileError("not a checkpoint: `vedtak audit checkpoint` writes JSON with " +
                           ", ".join(CHECKPOINT_FIELDS))
    return cp


def generate_key() -> tuple[bytes, bytes]:
    """A new Ed25519 key pair as (private PEM, public PEM)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def sign_checkpoint(store: AuditStore, private_pem: bytes) -> dict:
    """Sign the current head of the log; keep the result outside the log, where it cannot be truncated."""
    key = load_private_key(private_pem)
    seq, hash_ = store.head()
    signed_at = utc_now()
    signature = key.sign(_message(seq, hash_, signed_at))  # type: ignore[union-attr]
    return {"seq": seq, "hash": hash_, "signed_at": signed_at,
            "signature": base64.b64encode(signature).decode("ascii")}


def _check_checkpoint(store: AuditStore, cp: dict, public_pem: bytes | None, last_seq: int, add) -> None:
    from cryptography.exceptions import InvalidSignature
    try:
        seq, hash_, signed_at = int(cp["seq"]), str(cp["hash"]), str(cp["signed_at"])
        signature = base64.b64decode(cp["signature"])
    except (KeyError, TypeError, ValueError):
        add(0, "checkpoint", "the checkpoint file is malformed")
        return
    if public_pem is None:
        add(seq, "checkpoint", "a checkpoint needs the public key it was signed with")
        return
    try:
        public = load_public_key(public_pem)
    except KeyFileError as exc:
        add(seq, "checkpoint", str(exc))
        return
    try:
        public.verify(signature, _message(seq, hash_, signed_at))
    except InvalidSignature:
        add(seq, "checkpoint", "the checkpoint's signature does not verify with this public key")
        return
    if seq == 0:
        return
    if seq > last_seq:
        add(last_seq + 1, "truncated", f"the signed checkpoint covers record {seq} but the log ends at {last_seq}")
        return
    try:
        record = store.record(seq)
    except (ValueError, KeyError):  # a record too damaged to read is not the one that was signed
        record = None
    if record is None or record.hash != hash_:
        add(seq, "checkpoint", f"record {seq} is not the record the checkpoint signed")
