"""``protocol.read_message`` parses once and builds wechatpy's message itself: it must give what
wechatpy's ``parse_message`` (a second parse, with xmltodict) gives, for every message it accepts."""

from __future__ import annotations

from xml.sax.saxutils import escape

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wechatpy import parse_message

from app.wechat import protocol

#: The shapes WeChat sends (wechatpy's own test fixtures): flat fields, nested info, item lists.
SAMPLES = [
    "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o-1]]></FromUserName>"
    "<CreateTime>1348831860</CreateTime><MsgType><![CDATA[text]]></MsgType>"
    "<Content><![CDATA[积分]]></Content><MsgId>1234567890123456</MsgId></xml>",
    "<xml><ToUserName>gh_1</ToUserName><FromUserName>o-1</FromUserName><CreateTime>123456789</CreateTime>"
    "<MsgType>event</MsgType><Event>subscribe</Event><EventKey>qrscene_adv:SA0101</EventKey>"
    "<Ticket>TICKET</Ticket></xml>",
    "<xml><ToUserName>gh_1</ToUserName><FromUserName>o-1</FromUserName><CreateTime>123456789</CreateTime>"
    "<MsgType>event</MsgType><Event>subscribe</Event><EventKey>scanbarcode|x</EventKey></xml>",
    "<xml><ToUserName>gh_1</ToUserName><FromUserName>o-1</FromUserName><CreateTime>123456789</CreateTime>"
    "<MsgType>event</MsgType><Event>location_select</Event><EventKey>6</EventKey><SendLocationInfo>"
    "<Location_X>23</Location_X><Location_Y>113</Location_Y><Scale>15</Scale><Label> 广州 </Label>"
    "<Poiname></Poiname></SendLocationInfo></xml>",
    "<xml><ToUserName>gh_1</ToUserName><FromUserName>o-1</FromUserName><CreateTime>123456789</CreateTime>"
    "<MsgType>event</MsgType><Event>pic_weixin</Event><EventKey>6</EventKey><SendPicsInfo><Count>2</Count>"
    "<PicList><item><PicMd5Sum>a</PicMd5Sum></item><item><PicMd5Sum>b</PicMd5Sum></item></PicList>"
    "</SendPicsInfo></xml>",
    "<xml><ToUserName>gh_1</ToUserName><FromUserName>o-1</FromUserName><CreateTime>123456789</CreateTime>"
    "<MsgType>event</MsgType><Event>TEMPLATESENDJOBFINISH</Event><MsgID>200163836</MsgID>"
    "<Status><![CDATA[success]]></Status></xml>",
    "<xml><ToUserName>gh_1</ToUserName><FromUserName>o-1</FromUserName><CreateTime>123456789</CreateTime>"
    "<MsgType>device_event</MsgType><Event>bind</Event></xml>",
    "<xml><ToUserName>gh_1</ToUserName><FromUserName>o-1</FromUserName><CreateTime>123456789</CreateTime>"
    "<MsgType>device_text</MsgType></xml>",
    "<xml><ToUserName>gh_1</ToUserName><FromUserName>o-1</FromUserName><CreateTime>123456789</CreateTime>"
    '<MsgType>location</MsgType><Location_X>23.1</Location_X><Location_Y>113.3</Location_Y><Extra a="1">x</Extra>'
    "<Extra>y<b/>z</Extra></xml>",
]


def _same(xml: str) -> None:
    ours = protocol.read_message(xml.encode())
    theirs = parse_message(xml)
    assert type(ours) is type(theirs)
    assert ours._data == theirs._data
    assert (ours.type, ours.source, ours.target, ours.time) == (theirs.type, theirs.source, theirs.target, theirs.time)


@pytest.mark.parametrize("xml", SAMPLES)
def test_wechats_message_shapes_read_as_wechatpy_reads_them(xml):
    _same(xml)


_names = st.sampled_from(["Event", "EventKey", "Info", "item", "Count", "Extra", "a", "Label"])
_text = st.text(alphabet=st.sampled_from("ab 中\n\t<&]>"), max_size=6)


def _leaf(name_strategy=_names):
    def render(name: str, text: str, cdata: bool, attribute: str | None) -> str:
        body = f"<![CDATA[{text.replace(']]>', '')}]]>" if cdata else escape(text)
        attributes = f' k="{escape(attribute)}"' if attribute is not None else ""
        return f"<{name}{attributes}>{body}</{name}>"

    return st.builds(render, name_strategy, _text, st.booleans(), st.none() | _text)


_trees = st.recursive(
    _leaf(),
    lambda children: st.builds(
        lambda name, parts, text: f"<{name}>{escape(text)}{''.join(parts)}</{name}>",
        _names,
        st.lists(children, max_size=4),
        _text,
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    msg_type=st.sampled_from(["text", "event", "location", "image", "device_event", "device_text", "odd"]),
    event=st.none() | st.sampled_from(["subscribe", "SCAN", "CLICK", "unknown", "location_select"]),
    event_key=st.none() | st.sampled_from(["qrscene_adv:1", "scanimage|1", "", "key"]),
    extras=st.lists(_trees, max_size=4),
)
def test_any_accepted_message_reads_as_wechatpy_reads_it(msg_type, event, event_key, extras):
    fields = [f"<MsgType>{msg_type}</MsgType>"]
    if event is not None:
        fields.append(f"<Event>{event}</Event>")
    if event_key is not None:
        fields.append(f"<EventKey><![CDATA[{event_key}]]></EventKey>")
    xml = (
        "<xml><ToUserName>gh_1</ToUserName><FromUserName>o-1</FromUserName><CreateTime>123456789</CreateTime>"
        + "".join(fields + extras)
        + "</xml>"
    )
    try:
        protocol.read_message(xml.encode())
    except protocol.MalformedCallback:
        return  # refused (400) before wechatpy is asked anything
    _same(xml)
