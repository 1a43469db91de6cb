"""The passive text reply is written straight from a template: byte for byte what wechatpy renders."""

from __future__ import annotations

import pytest
from wechatpy.replies import TextReply

from app.wechat import protocol
from app.wechat.replies import Text
from tests.wechat_helpers import event_xml, text_xml

MESSAGES = [
    text_xml("o-render-1", "积分", msg_id=1),
    event_xml("o-render-2", "subscribe", create_time=1_900_000_000, EventKey="qrscene_adv:SA0101"),
    event_xml("o-render-3", "CLICK", EventKey="BALANCE"),
]


@pytest.mark.parametrize("xml", MESSAGES)
@pytest.mark.parametrize(
    "content", ["欢迎！我们正在为您开通会员。", "Welcome! <b>&amp;</b>", "", "two\nlines ]]> and more"]
)
def test_a_text_reply_is_what_wechatpy_renders(xml, content):
    message = protocol.read_message(xml.encode() if isinstance(xml, str) else xml)
    expected = TextReply(message=message, content=content, time=message.time).render()
    assert protocol.render(Text(content), message, at=message.time) == expected


def test_unstamped_it_is_stamped_now(monkeypatch):
    message = protocol.read_message(text_xml("o-render-4", "积分", msg_id=2).encode())
    monkeypatch.setattr(protocol.time, "time", lambda: 1_800_000_000.7)
    expected = TextReply(message=message, content="hi", time=1_800_000_000.7).render()
    assert protocol.render(Text("hi"), message) == expected
