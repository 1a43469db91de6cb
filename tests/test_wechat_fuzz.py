"""Fuzzing the callback: whatever arrives, the answer is never a 5xx."""

from __future__ import annotations

from xml.sax.saxutils import escape

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.wechat import simulator
from tests.wechat_helpers import AES_KEY, APP_ID, TOKEN

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
texts = st.text(max_size=80)
query_values = st.one_of(texts, st.just(""), st.integers().map(str))


@FUZZ
@given(
    body=st.binary(max_size=2048),
    query=st.dictionaries(
        st.sampled_from(["signature", "timestamp", "nonce", "encrypt_type", "msg_signature", "echostr", "openid"]),
        query_values,
    ),
)
def test_arbitrary_requests(client, app_ctx, body, query):
    assert client.post("/wechat/callback", query_string=query, data=body).status_code < 500
    assert client.get("/wechat/callback", query_string=query).status_code < 500


def _element(name: str, value: str | None) -> str:
    return "" if value is None else f"<{name}>{escape(value)}</{name}>"


signed_fields = st.fixed_dictionaries(
    {
        "ToUserName": st.one_of(st.none(), st.just(APP_ID), texts),
        "FromUserName": st.one_of(st.none(), st.just("o-fuzz"), texts),
        "CreateTime": st.one_of(st.none(), st.integers(-(2**63), 2**63).map(str), texts),
        "MsgType": st.one_of(
            st.none(), st.sampled_from(["text", "event", "image", "location", "voice", "link"]), texts
        ),
        "Event": st.one_of(
            st.none(),
            st.sampled_from(
                [
                    "subscribe",
                    "SCAN",
                    "unsubscribe",
                    "CLICK",
                    "VIEW",
                    "LOCATION",
                    "TEMPLATESENDJOBFINISH",
                    "location_select",
                ]
            ),
            texts,
        ),
        "EventKey": st.one_of(
            st.none(),
            st.sampled_from(["qrscene_adv:SA0101", "qrscene_order:x", "camp:X", "my_points", "adv:", "order:"]),
            texts,
        ),
        "Content": st.one_of(st.none(), st.sampled_from(["积分", "客服", "points"]), texts),
        "MsgId": st.one_of(st.none(), st.integers(-(2**70), 2**70).map(str), texts),
        "MsgID": st.one_of(st.none(), st.integers(-(2**70), 2**70).map(str), texts),
        "Status": st.one_of(st.none(), texts),
        "Latitude": st.one_of(st.none(), st.floats(allow_nan=True).map(str), texts),
        "Location_X": st.one_of(st.none(), st.floats().map(str), texts),
    }
)


@FUZZ
@given(fields=signed_fields)
def test_signed_messages_with_arbitrary_content(client, app_ctx, fields):
    body = "<xml>" + "".join(_element(name, value) for name, value in fields.items()) + "</xml>"
    response = client.post("/wechat/callback", query_string=simulator.signed_query(TOKEN), data=body.encode())
    assert response.status_code < 500, response.get_data(as_text=True)


@FUZZ
@given(encrypt=st.one_of(texts, st.binary(max_size=200).map(lambda b: b.hex())), signature=texts)
def test_safe_mode_with_arbitrary_ciphertext(client, app_ctx, encrypt, signature):
    query = {**simulator.signed_query(TOKEN), "encrypt_type": "aes", "msg_signature": signature}
    body = f"<xml><ToUserName>{APP_ID}</ToUserName><Encrypt>{escape(encrypt)}</Encrypt></xml>"
    assert client.post("/wechat/callback", query_string=query, data=body.encode()).status_code < 500


@FUZZ
@given(plain=texts)
def test_safe_mode_with_correctly_signed_but_meaningless_plaintext(client, app_ctx, plain):
    body, query = simulator.encrypt(
        f"<xml>{escape(plain)}</xml>", simulator.signed_query(TOKEN), token=TOKEN, aes_key=AES_KEY, app_id=APP_ID
    )
    assert client.post("/wechat/callback", query_string=query, data=body.encode()).status_code < 500
