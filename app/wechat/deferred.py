"""The deferred half of the callback: enrollment and red packets, run by the inbox drain.

The work is the same as an immediate answer (``router.route``); the answer then goes out as a
customer-service message (one per event, after the commit), in the member's language.
"""

from __future__ import annotations

from typing import Any

from app.care import notify
from app.core.i18n import in_locale
from app.core.inbox import InboundEvent
from app.jobs.drain import batched, handles
from app.members import identities
from app.wechat import protocol, router
from app.wechat.replies import Articles, Reply, Text


def reply_payload(reply: Reply) -> dict[str, Any] | None:
    if isinstance(reply, Text):
        return {"type": "text", "content": reply.content}
    if isinstance(reply, Articles):
        return {
            "type": "news",
            "articles": [
                {"title": a.title, "description": a.description, "url": a.url, "image": a.image} for a in reply.items
            ],
        }
    return None  # a hand-over to an agent only makes sense as an immediate reply


@handles("wechat", "event.subscribe_scan")
@handles("wechat", "event.scan")
@handles("wechat", "message.text")
def process_deferred(event: InboundEvent, body: bytes) -> str:
    message = protocol.read_message(body)
    at: Any = event.occurred_at
    identity = router.identity_for(message, at)  # locked for the transaction: route gets it again for free
    member = identities.member_of(identity)
    with in_locale(member.locale if member else None):
        reply = router.route(message, at)
        payload = reply_payload(reply) if reply is not None else None
    if payload is not None:
        notify.queue_chat_reply(message.source, identity.member_id, payload, for_event=event.id)
    return (payload or {}).get("content", "")[:200] or "processed"


batched("wechat")  # the handlers above keep to the unit of work: the drain may batch them
