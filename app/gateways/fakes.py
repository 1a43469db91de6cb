"""In-process fakes of the partner gateways, for tests and ``make run`` (the "sandbox").

They behave like the partner where it matters (a bill number is paid once, a used code is
refused, template messages get msgids), record every call, and can be told to fail
(``fail_next``). Under ``make run`` they also append each call to ``instance/sandbox-calls.jsonl``
so ``flask wechat sandbox-calls`` shows what the service would have sent.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import random
import secrets
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.core.qr import qr_png
from app.gateways import (
    ALREADY_USED,
    BAD_CODE,
    INVALID_SCENE,
    CrmBucket,
    CrmChange,
    GatewayError,
    IssuedService,
    MiniAppSignIn,
    PaymentRefused,
    QrTicket,
    RedPacketOrder,
    Refused,
    ServiceOrder,
    SharedPhone,
    Unavailable,
)

log = logging.getLogger(__name__)


def sandbox_unionid(person: str) -> str:
    """One person's unionid in the sandbox: a wx.login code equal to a service-account openid is the
    same person (so ``flask wechat simulate … --openid X`` and a mini-app login with code X meet)."""
    return f"sandbox-union-{hashlib.sha256(person.encode()).hexdigest()[:20]}"


class _Recorder:
    """Calls kept in memory (newest last), optionally journaled; failures queued per operation."""

    def __init__(self, journal: Path | None = None) -> None:
        self.journal = journal
        self.calls: list[dict[str, Any]] = []
        self._failures: dict[str, deque[GatewayError]] = defaultdict(deque)
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self._failures.clear()

    def fail_next(self, api: str, error: GatewayError, times: int = 1) -> None:
        """The next ``times`` calls of ``api`` raise ``error`` instead of succeeding."""
        with self._lock:
            self._failures[api].extend([error] * times)

    def _record(self, api: str, **payload: Any) -> None:
        entry = {"api": api, **payload}
        with self._lock:
            failure = self._failures[api].popleft() if self._failures[api] else None
            self.calls.append({**entry, "failed": repr(failure)} if failure else entry)
        if self.journal is not None and self.journal.parent.is_dir():
            line = json.dumps({"at": int(time.time()), **entry}, ensure_ascii=False, default=str)
            with self.journal.open("a", encoding="utf-8") as journal:
                journal.write(line + "\n")
        if failure is not None:
            raise failure

    def of(self, api: str) -> list[dict[str, Any]]:
        with self._lock:
            return [call for call in self.calls if call["api"] == api and "failed" not in call]


class FakeOfficialAccount(_Recorder):
    """The service account: messages are recorded, QR codes and msgids are made up."""

    def __init__(self, journal: Path | None = None) -> None:
        super().__init__(journal)
        self.unionid_of: Callable[[str], str | None] = sandbox_unionid
        self._msgids = itertools.count(int(time.time()) * 1000)

    def send_text(self, openid: str, content: str) -> None:
        self._record("custom.text", touser=openid, content=content)

    def send_articles(self, openid: str, articles: list[dict[str, Any]]) -> None:
        self._record("custom.news", touser=openid, articles=articles)

    def send_template(self, openid: str, template_id: str, data: dict[str, Any], *, url: str | None = None) -> int:
        self._record("template.send", touser=openid, template_id=template_id, data=data, url=url)
        return next(self._msgids)

    def create_qr_code(self, scene: str, *, expire_seconds: int | None) -> QrTicket:
        self._record("qrcode.create", scene=scene, expire_seconds=expire_seconds)
        ticket = hashlib.sha256(f"{scene}:{time.time_ns()}".encode()).hexdigest()[:32]
        return QrTicket(ticket, f"http://weixin.qq.com/q/sandbox-{ticket[:16]}", expire_seconds)

    def follower_unionid(self, openid: str) -> str | None:
        self._record("user.info", openid=openid)
        return self.unionid_of(openid)

    def create_menu(self, menu: dict[str, Any]) -> None:
        self._record("menu.create", menu=menu)

    # what tests ask
    def texts_to(self, openid: str) -> list[str]:
        return [call["content"] for call in self.of("custom.text") if call["touser"] == openid]

    def templates(self) -> list[dict[str, Any]]:
        return self.of("template.send")


class FakeMiniApp(_Recorder):
    """The mini-app API. In the sandbox any ``wx.login`` code signs in (codes starting with "bad"
    are refused) and a phone code ending in 11 digits shares that number; tests register exact
    codes instead (``accept_any_code = False``)."""

    def __init__(self, journal: Path | None = None) -> None:
        super().__init__(journal)
        self.accept_any_code = True
        self.sessions: dict[str, MiniAppSignIn] = {}
        self.phones: dict[str, str] = {}
        self._msgids = itertools.count(int(time.time()) * 1000 + 500_000_000)

    def reset(self) -> None:
        super().reset()
        self.accept_any_code = True
        self.sessions.clear()
        self.phones.clear()

    def code_to_session(self, code: str) -> MiniAppSignIn:
        self._record("jscode2session", js_code=code)
        if code in self.sessions:
            return self.sessions[code]
        if not self.accept_any_code or not code or code.startswith("bad"):
            raise Refused("invalid code", code=BAD_CODE)
        digest = hashlib.sha256(code.encode()).hexdigest()
        return MiniAppSignIn(f"sandbox-mini-{digest[:20]}", secrets.token_urlsafe(16), sandbox_unionid(code))

    def phone_number(self, code: str) -> SharedPhone:
        self._record("getuserphonenumber", code=code)
        if code in self.phones:
            return SharedPhone(self.phones[code], "86")
        digits = code.rsplit("-", 1)[-1]
        if not self.accept_any_code or not code or code.startswith("bad"):
            raise Refused("invalid code", code=BAD_CODE)
        return SharedPhone(digits if digits.isdigit() and len(digits) == 11 else "13800138000", "86")

    def unlimited_code(self, scene: str, *, page: str | None = None) -> bytes:
        """A real PNG (a QR code of the page and scene) standing in for WeChat's round code."""
        self._record("getwxacodeunlimit", scene=scene, page=page)
        if len(scene) > 32:
            raise Refused("invalid scene", code=INVALID_SCENE)
        return qr_png(f"{page or ''}?scene={scene}", box_size=4)

    def send_subscribe(self, openid: str, template_id: str, data: dict[str, Any], *, page: str | None = None) -> int:
        self._record("subscribe.send", touser=openid, template_id=template_id, data=data, page=page)
        return next(self._msgids)

    def subscribes(self) -> list[dict[str, Any]]:
        return self.of("subscribe.send")


class FakeSms(_Recorder):
    """The logging SMS gateway of development and tests: nothing leaves the process."""

    def __init__(self, journal: Path | None = None) -> None:
        super().__init__(journal)
        self._ids = itertools.count(1)

    def send(self, phone: str, template_code: str, params: dict[str, str], *, out_id: str | None = None) -> str:
        self._record("sms.send", phone=phone, template_code=template_code, params=params, out_id=out_id)
        message_id = f"sandbox-sms-{next(self._ids)}"
        log.info("SMS (not sent, sandbox) %s to …%s: %s", template_code, phone[-4:], params)
        return message_id

    def sent(self) -> list[dict[str, Any]]:
        return self.of("sms.send")


class FakePayments(_Recorder):
    """WeChat Pay's red packets: a bill number moves money at most once, whatever is retried.

    ``failure_rate`` makes some calls fail the way WeChat Pay does: half answer SYSTEMERROR
    before paying, half pay and lose the answer (a timeout), both retried with the same bill.
    """

    def __init__(self, journal: Path | None = None, *, failure_rate: float = 0.0, seed: int = 7) -> None:
        super().__init__(journal)
        self.paid: dict[str, int] = {}  # bill number → times money moved (never more than 1)
        self.statuses: dict[str, str] = {}  # what gethbinfo answers per bill
        self.failure_rate = failure_rate
        self._random = random.Random(seed)  # noqa: S311 - reproducible failure injection, not security
        self._pay_lock = threading.Lock()

    def reset(self) -> None:
        super().reset()
        self.paid.clear()
        self.statuses.clear()
        self.failure_rate = 0.0

    def send_red_packet(self, order: RedPacketOrder) -> str:
        self._record("sendredpack", mch_billno=order.bill_no, openid=order.openid, amount_fen=order.amount_fen)
        with self._pay_lock:
            roll = self._random.random()
            if roll < self.failure_rate / 2:
                raise Unavailable("系统繁忙,请稍后再试.", code="SYSTEMERROR")
            self.paid.setdefault(order.bill_no, 1)  # the money moves here, at most once per bill number
            self.statuses.setdefault(order.bill_no, "SENT")
            lost_reply = roll < self.failure_rate
        if lost_reply:
            raise Unavailable("read timed out")
        return f"sandbox{hashlib.sha256(order.bill_no.encode()).hexdigest()[:20]}"

    def red_packet_status(self, bill_no: str) -> str | None:
        self._record("gethbinfo", mch_billno=bill_no)
        return self.statuses.get(bill_no)

    def refuse_next(self, code: str, times: int = 1) -> None:
        """The next sends are refused for good (e.g. NOTENOUGH: the merchant account is empty)."""
        self.fail_next("sendredpack", PaymentRefused(code, code=code), times)

    def requests(self) -> list[str]:
        return [call["mch_billno"] for call in self.calls if call["api"] == "sendredpack"]


def bucket_checksum(lines: list[str]) -> str:
    """MD5 of sorted ``member_no:tier:balance`` lines joined by newlines (the CRM export's digest)."""
    return hashlib.md5("\n".join(sorted(lines)).encode()).hexdigest()  # noqa: S324 - a checksum, not security


class FakeCrm(_Recorder):
    """The CRM: keeps what it received, drops repeated idempotency keys, checks each member's
    sequence numbers only grow, and keeps a member record (tier, balance) for its export.

    ``down = True`` answers every delivery ``Unavailable`` (the CRM is out); ``fail_next("deliver",
    error)`` fails single calls; ``delay`` seconds per delivery imitate the CRM's own speed.
    """

    def __init__(self, journal: Path | None = None) -> None:
        super().__init__(journal)
        self._state_lock = threading.Lock()
        self.down = False
        self.delay = 0.0
        self._reset_state()

    def _reset_state(self) -> None:
        self.accepted: dict[str, list[int]] = defaultdict(list)  # member_no → seqs, in arrival order
        self.keys: set[str] = set()
        self.duplicates = 0
        self.out_of_order: list[tuple[str, int, int]] = []  # (member_no, last seq, arriving seq)
        self.records: dict[str, tuple[str, int]] = {}  # member_no → (tier, balance)

    def reset(self) -> None:
        super().reset()
        with self._state_lock:
            self._reset_state()
        self.down = False
        self.delay = 0.0

    def deliver(self, change: CrmChange) -> None:
        if self.delay:
            time.sleep(self.delay)
        if self.down:
            raise Unavailable("connection refused")
        self._record(
            "deliver", key=change.idempotency_key, member_no=change.member_no, seq=change.seq, kind=change.kind
        )
        with self._state_lock:
            if change.idempotency_key in self.keys:
                self.duplicates += 1
                return
            seqs = self.accepted[change.member_no]
            if seqs and change.seq <= seqs[-1]:
                self.out_of_order.append((change.member_no, seqs[-1], change.seq))
            self.keys.add(change.idempotency_key)
            seqs.append(change.seq)
            member = change.payload.get("member") or {}
            if "tier" in member and "balance" in member:
                self.records[change.member_no] = (str(member["tier"]), int(member["balance"]))
            for merged_no in change.payload.get("merged_member_nos", []):
                self.records.pop(merged_no, None)

    def delivered(self) -> int:
        with self._state_lock:
            return sum(len(seqs) for seqs in self.accepted.values())

    def export_buckets(self, prefix_length: int) -> list[CrmBucket]:
        self._record("export_buckets", prefix_length=prefix_length)
        lines: dict[str, list[str]] = defaultdict(list)
        with self._state_lock:
            for member_no, (tier, balance) in self.records.items():
                lines[member_no[:prefix_length]].append(f"{member_no}:{tier}:{balance}")
        return [CrmBucket(prefix, len(found), bucket_checksum(found)) for prefix, found in sorted(lines.items())]

    def export_members(self, prefix: str) -> dict[str, tuple[str, int]]:
        self._record("export_members", prefix=prefix)
        with self._state_lock:
            return {no: record for no, record in self.records.items() if no.startswith(prefix)}


class FakeBenefitPartner(_Recorder):
    """The roadside / lounge partner: one order and code per ``out_order_no`` (a repeat answers the
    same), a void of a used code refused with ``ALREADY_USED``. ``use(out_order_no)`` is the member
    using the code at the partner (a test then posts the partner's usage callback)."""

    def __init__(self, journal: Path | None = None) -> None:
        super().__init__(journal)
        self._reset_state()

    def _reset_state(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        self._numbers = itertools.count(1)

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._reset_state()

    def issue(self, order: ServiceOrder) -> IssuedService:
        self._record("issue", out_order_no=order.out_order_no, service=order.service, member_no=order.member_no)
        with self._lock:
            known = self.orders.get(order.out_order_no)
            if known is None:
                known = {
                    "order_no": f"P{next(self._numbers):08d}",
                    "code": "".join(secrets.choice("0123456789") for _ in range(8)),
                    "status": "open",
                }
                self.orders[order.out_order_no] = known
            return IssuedService(known["order_no"], known["code"], None)

    def void(self, out_order_no: str) -> None:
        self._record("void", out_order_no=out_order_no)
        with self._lock:
            known = self.orders.get(out_order_no)
            if known is None:
                return
            if known["status"] == "used":
                raise Refused("service code already used", code=ALREADY_USED)
            known["status"] = "void"

    def use(self, out_order_no: str) -> None:
        with self._lock:
            self.orders[out_order_no]["status"] = "used"
