"""PII encryption with key rotation, blind indexes, and request signatures."""

import time

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from app.core.db import db
from app.core.errors import BadSignature
from app.core.security import PiiCipher, sign_timestamped, verify_timestamped_signature
from tests import factories

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def test_rotation_keeps_old_ciphertext_readable_and_the_blind_index_stable():
    before = PiiCipher([OLD])
    token = before.encrypt("13812341234")
    after = PiiCipher([NEW, OLD])  # a new key goes in front
    assert after.decrypt(token) == "13812341234"
    assert after.blind_index("13812341234", "phone") == before.blind_index("13812341234", "phone")
    rotated = after.rotate(token)
    assert PiiCipher([NEW]).decrypt(rotated) == "13812341234"
    with pytest.raises(ValueError, match="cannot be decrypted"):
        PiiCipher([NEW]).decrypt(token)


def test_blind_indexes_are_separated_by_purpose_and_keyed():
    cipher = PiiCipher([OLD])
    assert cipher.blind_index("x", "phone") != cipher.blind_index("x", "name")
    assert cipher.blind_index("x", "phone") != PiiCipher([NEW]).blind_index("x", "phone")


def test_a_bad_data_key_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="Fernet"):
        PiiCipher(["not-a-key"])


def test_phone_numbers_are_encrypted_at_rest(app_ctx):
    member = factories.member(phone="13812349876")
    db.session.flush()
    stored = db.session.execute(
        sa.text("SELECT phone, phone_index FROM members WHERE id = :id"), {"id": member.id}
    ).one()
    assert "13812349876" not in stored.phone
    assert "9876" not in stored.phone_index
    db.session.expire(member)
    assert member.phone == "13812349876"


def test_signature_accepts_the_exact_body_and_rejects_anything_else():
    body = b'{"a":1}'
    headers = sign_timestamped("s3cret", body)
    sent = verify_timestamped_signature(
        secret="s3cret",
        timestamp=headers["X-Timestamp"],
        signature=headers["X-Signature"],
        body=body,
        window_seconds=300,
    )
    assert sent == int(headers["X-Timestamp"])
    for secret, tampered in (("other", body), ("s3cret", b'{"a":2}')):
        with pytest.raises(BadSignature):
            verify_timestamped_signature(
                secret=secret,
                timestamp=headers["X-Timestamp"],
                signature=headers["X-Signature"],
                body=tampered,
                window_seconds=300,
            )


@pytest.mark.parametrize("skew", [-301, 301])
def test_signature_outside_the_window_is_stale(skew):
    body = b"{}"
    now = time.time()
    headers = sign_timestamped("k", body, int(now) + skew)
    with pytest.raises(BadSignature) as excinfo:
        verify_timestamped_signature(
            secret="k",
            timestamp=headers["X-Timestamp"],
            signature=headers["X-Signature"],
            body=body,
            window_seconds=300,
            now=now,
        )
    assert excinfo.value.details == {"reason": "stale_timestamp"}


@pytest.mark.parametrize(
    ("timestamp", "signature", "reason"),
    [
        (None, "sha256=00", "missing_headers"),
        ("abc", "sha256=00", "bad_timestamp"),
        ("NOW", "md5=00", "signature_mismatch"),
    ],
)
def test_malformed_signature_headers(timestamp, signature, reason):
    if timestamp == "NOW":
        timestamp = str(int(time.time()))
    with pytest.raises(BadSignature) as excinfo:
        verify_timestamped_signature(secret="k", timestamp=timestamp, signature=signature, body=b"", window_seconds=300)
    assert excinfo.value.details == {"reason": reason}


def test_the_writer_makes_fernet_tokens_byte_for_byte_and_across_threads():
    """``FernetWriter`` keeps one CBC context per thread; its tokens are Fernet's own."""
    import os
    import threading

    from app.core.security import FernetWriter

    key = Fernet.generate_key()
    fernet, writer = Fernet(key), FernetWriter(key)
    for length in [*range(0, 50), 255, 256, 257, 4096]:
        data, iv = os.urandom(length), os.urandom(16)
        token = writer.encrypt_at(data, 1_733_300_000, iv)
        assert token == fernet._encrypt_from_parts(data, 1_733_300_000, iv)  # the same IV and time
        assert fernet.decrypt(writer.encrypt(data)) == data
    failures: list[BaseException] = []

    def write_many(seed: int) -> None:
        try:
            for i in range(300):
                data = bytes([seed]) * ((seed * 7 + i) % 100)
                assert fernet.decrypt(writer.encrypt(data)) == data
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=write_many, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_the_cipher_encrypts_with_the_first_key_for_every_key_to_read():
    cipher = PiiCipher([NEW, OLD])
    assert PiiCipher([NEW]).decrypt(cipher.encrypt("13812341234")) == "13812341234"
    assert Fernet(NEW.encode()).decrypt(cipher.encrypt_bytes(b"\x00body")) == b"\x00body"
    assert cipher.made_with_primary(cipher.encrypt("x"))
