"""Signed checkpoints of the log's heads: Ed25519 keys, signing every chain's head, and checking a checkpoint.

A checkpoint kept outside the log commits to the main chain's head, every partition chain's head and
the queue events' head, so that a tail cut from any of them together with its head is found.
A checkpoint signed before partition chains and queue events were covered (only ``seq`` and
``hash``) still verifies, for the main chain.
"""

from __future__ import annotations

import base64
import json

from .record import utc_now


def _message(cp: dict) -> bytes:
    signed = {"hash": cp["hash"], "log": "vedtak-audit", "seq": cp["seq"], "signed_at": cp["signed_at"]}
    for key in ("chains", "queue"):
        if key in cp:
            signed[key] = cp[key]
    return json.dumps(signed, sort_keys=True, separators=(",", ":")).encode()


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


def _well_formed(cp) -> bool:
    if not isinstance(cp, dict) or any(type(cp.get(k)) is not t for k, t in CHECKPOINT_FIELDS.items()):
        return False
    chains, queue = cp.get("chains", {}), cp.get("queue", {"id": 0, "hash": ""})
    heads = list(chains.values()) if isinstance(chains, dict) else [None]
    return all(isinstance(h, dict) and type(h.get("seq")) is int and type(h.get("hash")) is str for h in heads) \
        and isinstance(queue, dict) and type(queue.get("id")) is int and type(queue.get("hash")) is str


def load_checkpoint(data: bytes) -> dict:
    """A signed checkpoint from its file's bytes, or a KeyFileError saying what the file is instead."""
    if b"-----BEGIN" in data and b"KEY-----" in data:
        raise KeyFileError("this is a key file, not a checkpoint (`vedtak audit checkpoint` writes one)")
    try:
        cp = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        cp = None
    if not _well_formed(cp):
        raise KeyFileError("not a checkpoint: `vedtak audit checkpoint` writes JSON with " +
                           ", ".join(CHECKPOINT_FIELDS) + " (and chains, queue)")
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


def sign_checkpoint(store, private_pem: bytes) -> dict:
    """Sign the current heads of the log — the main chain, every partition chain and the queue's
    events; keep the result outside the log, where it cannot be truncated."""
    key = load_private_key(private_pem)
    seq, hash_ = store.head()
    cp: dict = {"seq": seq, "hash": hash_, "signed_at": utc_now(),
                "chains": {c.chain: {"seq": c.seq, "hash": c.hash} for c in store.chains()}}
    queue = store.queue_head()
    if queue is not None:
        cp["queue"] = {"id": queue[0], "hash": queue[1]}
    cp["signature"] = base64.b64encode(key.sign(_message(cp))).decode("ascii")  # type: ignore[union-attr]
    return cp


def check_checkpoint(store, cp: dict, public_pem: bytes | None, last_seq: int, add, adder, other) -> None:
    """Problems of a checkpoint against the log: ``add`` for the main chain, ``adder(chain)`` for a
    partition chain, ``other(subject, kind, message)`` for the queue's events."""
    from cryptography.exceptions import InvalidSignature
    if not _well_formed(cp):
        add(0, "checkpoint", "the checkpoint file is malformed")
        return
    try:
        signature = base64.b64decode(cp["signature"])
    except ValueError:
        add(0, "checkpoint", "the checkpoint file is malformed")
        return
    seq, hash_ = cp["seq"], cp["hash"]
    if public_pem is None:
        add(seq, "checkpoint", "a checkpoint needs the public key it was signed with")
        return
    try:
        public = load_public_key(public_pem)
    except KeyFileError as exc:
        add(seq, "checkpoint", str(exc))
        return
    try:
        public.verify(signature, _message(cp))
    except InvalidSignature:
        add(seq, "checkpoint", "the checkpoint's signature does not verify with this public key")
        return
    if seq > last_seq:
        add(last_seq + 1, "truncated", f"the signed checkpoint covers record {seq} but the log ends at {last_seq}")
    elif seq and _hash_of(store, seq, None) != hash_:
        add(seq, "checkpoint", f"record {seq} is not the record the checkpoint signed")
    for name, head in sorted(cp.get("chains", {}).items()):
        if head["seq"] and _hash_of(store, head["seq"], name) != head["hash"]:
            adder(name)(head["seq"], "checkpoint", f"record {head['seq']} is missing or not the record the "
                        "checkpoint signed as this chain's head (a cut tail, or a deleted chain)")
    queue = cp.get("queue")
    if queue is not None:
        found = [r for r in store.work_item_event_rows() if int(r[0]) == queue["id"]]
        if not found or found[0][8] != queue["hash"]:
            other(f"queue event {queue['id']}", "checkpoint", f"queue event {queue['id']} is missing or not the "
                  "event the checkpoint signed as the queue's last (events cut from the end, or changed)")


def _hash_of(store, seq: int, chain: str | None) -> str | None:
    """The stored hash of a record, None if it is missing or too damaged to read (a version 2 record:
    the hash of the block it ends; a head is always a block's last record)."""
    found = list(store._query(store._sql("SELECT last_seq, hash FROM audit_blocks WHERE chain = ? AND first_seq <= ? "
                                         "AND last_seq >= ?"), (chain or "", seq, seq)))
    if found:
        return found[0][1] if int(found[0][0]) == seq else None
    rows = store.rows(seq) if chain is None else store.chain_rows(chain, seq)
    try:
        row = next(rows, None)
    finally:
        rows.close()
    return row[8] if row is not None and int(row[0]) == seq else None
