"""Signatures on inbound channels, PII encryption at rest, and blind indexes for lookups.

PII is encrypted with Fernet (AES-128-CBC + HMAC-SHA256). ``LOYALTY_DATA_KEY`` holds one key, or
several comma-separated while rotating: the first encrypts, all decrypt (``MultiFernet``).
``flask pii rotate`` (``core/key_rotation.py``) re-encrypts every stored value still made with an
older key; afterwards the older keys can be removed. Every column of an ``Encrypted`` type is
found by that command from the metadata: a new encrypted column needs no registration.

Lookups use a blind index: HMAC-SHA256 of the normalized value under ``LOYALTY_BLIND_INDEX_KEY``,
or, when that is unset, under a key derived (HKDF) from the *last* data key, so adding a new key in
front never changes the index. Indexes are not re-computed by a rotation: before the last data key
is removed, pin its derived index key (``flask pii index-key``) as ``LOYALTY_BLIND_INDEX_KEY``.
Changing the index key itself means re-indexing every row (phone, VIN, plate) in one go.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import os
import threading
import time
from typing import Any

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask

from app.config import Settings, settings_of
from app.core.errors import BadSignature


def derived_index_key(anchor_data_key: str) -> bytes:
    """The blind-index key derived from a data key (the last one) when none is pinned."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"loyalty-blind-index", info=b"v1").derive(
        anchor_data_key.encode()
    )


def derived_index_key_text(anchor_data_key: str) -> str:
    """``derived_index_key`` in the form ``LOYALTY_BLIND_INDEX_KEY`` takes."""
    return base64.urlsafe_b64encode(derived_index_key(anchor_data_key)).decode("ascii")


def new_data_key() -> str:
    return Fernet.generate_key().decode("ascii")


class FernetWriter:
    """Fernet tokens (``Fernet.encrypt``'s format, for any ``Fernet``/``MultiFernet`` holding the
    key to decrypt) without building OpenSSL objects per token.

    ``Fernet.encrypt`` makes a new AES-CBC context and a new HMAC per token; inside a request, after
    the socket and database waits, fetching those from OpenSSL costs ~100 µs of CPU (~10 µs in a
    tight loop). Here each thread keeps one CBC encryptor for good: CBC chains each block to the
    previous ciphertext block, so a token encrypted with IV ``iv`` on a context whose last output
    block was ``chain`` starts with ``iv XOR chain XOR first plaintext block`` and then gives exactly
    the blocks a fresh context started with ``iv`` would. The IV is random per token (``os.urandom``),
    as in ``Fernet``; the MAC is a copy of an HMAC already keyed. Any failure drops the thread's
    context (a new one starts from a known chain)."""

    def __init__(self, key: bytes) -> None:
        raw = base64.urlsafe_b64decode(key)
        if len(raw) != 32:
            raise ValueError("Fernet key must be 32 url-safe base64-encoded bytes.")
        self._signing = hmac.new(raw[:16], digestmod=hashlib.sha256)
        self._aes = algorithms.AES(raw[16:])
        self._local = threading.local()

    def encrypt(self, data: bytes) -> bytes:
        return self.encrypt_at(data, int(time.time()), os.urandom(16))

    def encrypt_at(self, data: bytes, current_time: int, iv: bytes) -> bytes:
        local = self._local
        state = getattr(local, "cbc", None)
        if state is None:
            state = [Cipher(self._aes, modes.CBC(bytes(16))).encryptor(), 0]  # [context, last block]
        local.cbc = None  # taken: an exception below leaves no half-advanced context behind
        encryptor, chain = state
        pad = 16 - len(data) % 16
        padded = data + bytes((pad,)) * pad  # PKCS7
        first = int.from_bytes(padded[:16], "big") ^ int.from_bytes(iv, "big") ^ chain
        ciphertext = encryptor.update(first.to_bytes(16, "big") + padded[16:])
        if len(ciphertext) != len(padded):  # CBC without padding gives back every whole block
            raise RuntimeError("AES-CBC context held back output")
        state[1] = int.from_bytes(ciphertext[-16:], "big")
        local.cbc = state
        parts = b"\x80" + current_time.to_bytes(8, "big") + iv + ciphertext
        mac = self._signing.copy()
        mac.update(parts)
        return base64.urlsafe_b64encode(parts + mac.digest())


class PiiCipher:
    """Encrypts and decrypts personal data; computes blind indexes."""

    def __init__(self, keys: list[str], index_key: str = "") -> None:
        if not keys:
            raise ValueError("at least one data key is required")
        try:
            self._primary = Fernet(keys[0].encode())
            self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])
            self._writer = FernetWriter(keys[0].encode())  # encrypts as self._fernet would
        except ValueError as exc:
            raise ValueError("LOYALTY_DATA_KEY must be url-safe base64 Fernet keys (32 bytes)") from exc
        self._index_key = _pinned_index_key(index_key) if index_key else derived_index_key(keys[-1])
        self.primary_key_id = hashlib.sha256(keys[0].encode()).hexdigest()[:16]

    def encrypt(self, plaintext: str) -> str:
        return self._writer.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except InvalidToken as exc:
            raise ValueError("ciphertext cannot be decrypted with the configured data keys") from exc

    def encrypt_bytes(self, plaintext: bytes) -> bytes:
        return self._writer.encrypt(plaintext)

    def decrypt_bytes(self, token: bytes) -> bytes:
        return self._fernet.decrypt(token)

    def rotate(self, token: str) -> str:
        """Re-encrypt under the newest key (no-op in meaning, new ciphertext)."""
        return self._fernet.rotate(token.encode("ascii")).decode("ascii")

    def rotate_bytes(self, token: bytes) -> bytes:
        return self._fernet.rotate(token)

    def made_with_primary(self, token: str | bytes) -> bool:
        """Whether ``token`` was encrypted under the first (current) key: it needs no rotation."""
        try:
            self._primary.decrypt(token)
        except (InvalidToken, ValueError, TypeError):
            return False
        return True

    def blind_index(self, normalized_value: str, purpose: str) -> str:
        """Deterministic keyed hash for equality lookups; ``purpose`` separates index domains."""
        message = f"{purpose}:{normalized_value}".encode()
        return hmac.new(self._index_key, message, hashlib.sha256).hexdigest()


def _pinned_index_key(value: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(value.encode())
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ValueError("LOYALTY_BLIND_INDEX_KEY must be 32 bytes, url-safe base64 (flask pii index-key)")
    return key


def cipher_for(settings: Settings) -> PiiCipher:
    return PiiCipher(settings.data_keys, index_key=settings.BLIND_INDEX_KEY)


_cipher: PiiCipher | None = None


def cipher() -> PiiCipher:
    if _cipher is None:
        raise RuntimeError("PII cipher not configured; create the app first")
    return _cipher


def init_app(app: Flask) -> None:
    global _cipher  # noqa: PLW0603 - one process-wide cipher, like the engine
    _cipher = cipher_for(settings_of(app))


class Encrypted(sa.TypeDecorator):
    """Base of the column types stored as Fernet ciphertext (``flask pii rotate`` finds them)."""

    impl = sa.Text
    cache_ok = True


class EncryptedText(Encrypted):
    """A text column stored as Fernet ciphertext; Python code only ever sees plaintext."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: sa.Dialect) -> str | None:
        return None if value is None else cipher().encrypt(value)

    def process_result_value(self, value: str | None, dialect: sa.Dialect) -> str | None:
        return None if value is None else cipher().decrypt(value)


class EncryptedDate(Encrypted):
    """A date stored as Fernet ciphertext of its ISO form (a birthday): compare and filter in Python."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: dt.date | None, dialect: sa.Dialect) -> str | None:
        return None if value is None else cipher().encrypt(value.isoformat())

    def process_result_value(self, value: str | None, dialect: sa.Dialect) -> dt.date | None:
        return None if value is None else dt.date.fromisoformat(cipher().decrypt(value))


class EncryptedFloat(Encrypted):
    """A number stored as Fernet ciphertext (a location coordinate)."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: float | None, dialect: sa.Dialect) -> str | None:
        return None if value is None else cipher().encrypt(repr(float(value)))

    def process_result_value(self, value: str | None, dialect: sa.Dialect) -> float | None:
        return None if value is None else float(cipher().decrypt(value))


class EncryptedBytes(Encrypted):
    """Raw bodies (inbound events) kept encrypted at rest: they carry phone numbers."""

    impl = sa.LargeBinary
    cache_ok = True

    def process_bind_param(self, value: bytes | None, dialect: sa.Dialect) -> bytes | None:
        return None if value is None else cipher().encrypt_bytes(value)

    def process_result_value(self, value: bytes | None, dialect: sa.Dialect) -> bytes | None:
        return None if value is None else cipher().decrypt_bytes(bytes(value))


def sha256_hex(value: str) -> str:
    """The stored form of a random bearer secret (≥ 128 bits: no salt or stretching needed)."""
    return hashlib.sha256(value.encode()).hexdigest()


#: HMACs already keyed with each signing secret in use (a partner's, WeChat's): a copy per message
#: skips OpenSSL's set-up of a new HMAC, which inside a request costs more than the hashing itself.
_keyed_hmacs: dict[str, Any] = {}


def hmac_sha256_hex(secret: str, message: bytes) -> str:
    keyed = _keyed_hmacs.get(secret)
    if keyed is None:
        keyed = hmac.new(secret.encode(), digestmod=hashlib.sha256)
        if len(_keyed_hmacs) >= 16:  # a handful of secrets in practice; never grows unbounded
            _keyed_hmacs.clear()
        _keyed_hmacs[secret] = keyed
    mac = keyed.copy()  # the shared object is never updated: copies are independent
    mac.update(message)
    return mac.hexdigest()


def verify_timestamped_signature(
    *,
    secret: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    window_seconds: int,
    now: float | None = None,
) -> int:
    """Check ``X-Signature: sha256=<hex HMAC of "<timestamp>.<body>">`` and the time window.

    Returns the timestamp. Raises ``BadSignature`` for anything missing, stale or wrong; the
    comparison is constant-time.
    """
    if not timestamp or not signature:
        raise BadSignature(details={"reason": "missing_headers"})
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise BadSignature(details={"reason": "bad_timestamp"}) from None
    current = time.time() if now is None else now
    if abs(current - sent_at) > window_seconds:
        raise BadSignature(details={"reason": "stale_timestamp"})
    scheme, _, digest = signature.partition("=")
    expected = hmac_sha256_hex(secret, timestamp.encode() + b"." + body)
    # bytes: compare_digest refuses a str with non-ASCII characters (a TypeError, which was a 500)
    if scheme != "sha256" or not hmac.compare_digest(digest.lower().encode("utf-8", "replace"), expected.encode()):
        raise BadSignature(details={"reason": "signature_mismatch"})
    return sent_at


def sign_timestamped(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, Any]:
    """Headers for a signed request (used by the demo sender, tests and benchmarks)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {"X-Timestamp": ts, "X-Signature": "sha256=" + hmac_sha256_hex(secret, ts.encode() + b"." + body)}
