"""What a conversation handler answers, independent of WeChat's XML (``protocol.render`` does that)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Text:
    content: str


@dataclass(frozen=True)
class Article:
    title: str
    description: str
    url: str
    image: str = ""


@dataclass(frozen=True)
class Articles:
    items: list[Article] = field(default_factory=list)


@dataclass(frozen=True)
class TransferToAgent:
    """Hand the conversation over to a human agent (客服)."""


Reply = Text | Articles | TransferToAgent
