"""The chat: keywords and menu clicks answered from the same services the mini-app uses.

"积分"/"points" → balance and points expiring soon; "等级"/"tier" → tier and progress; "权益" →
benefits and what is left of each this membership year; "预约" → booking card and my upcoming
bookings; "推荐" → referral card; "客服"/"人工" → a human agent; a campaign
password → red packet; anything else → a short help menu. Everything is rendered in the member's
language (zh_CN unless they chose English).
"""

from __future__ import annotations

import datetime as dt

from app.benefits import availability, booking
from app.benefits.availability import Offer
from app.benefits.catalog import localized
from app.config import current_settings
from app.core import tunables
from app.core.clock import to_business, utcnow
from app.core.i18n import _
from app.dealers.services import nearest_dealers
from app.members.models import Member
from app.points import queries
from app.referrals import views as referral_views
from app.tiers.display import tier_highlights, tier_name
from app.tiers.policy import current_tier
from app.wechat.replies import Article, Articles, Reply, Text, TransferToAgent

H5_BASE = tunables.define("wechat.h5_base_url", "https://m.loyalty.example.com", "Web fallback for mini-app links")

PAGES = {
    "home": "pages/index/index",
    "points": "pages/points/index",
    "benefits": "pages/benefits/index",
    "booking": "pages/booking/index",
    "referral": "pages/referral/index",
    "join": "pages/join/index",
}

KEYWORDS: dict[str, tuple[str, ...]] = {
    "points": ("积分", "我的积分", "points", "point", "jf"),
    "tier": ("等级", "会员等级", "我的等级", "tier", "level"),
    "benefits": ("权益", "我的权益", "benefits", "benefit"),
    "booking": ("预约", "预约服务", "保养", "book", "booking"),
    "referral": ("推荐", "推荐购车", "refer", "referral"),
    "agent": ("客服", "人工", "人工客服", "agent", "human", "service"),
}

MENU_KEYS = {
    "my_points": "points",
    "my_tier": "tier",
    "my_benefits": "benefits",
    "book_service": "booking",
    "refer_friend": "referral",
    "contact_service": "agent",
}


#: Replies that stop (退订, the usual SMS-style "TD") or resume marketing messages.
MARKETING_CHOICES: dict[str, tuple[str, ...]] = {
    "stop": ("退订", "td", "取消订阅", "unsubscribe"),
    "resume": ("恢复订阅", "resubscribe"),
}


def _key_for(text: str, table: dict[str, tuple[str, ...]]) -> str | None:
    """The key of ``table`` whose words include the whole text (case and spaces aside)."""
    word = text.strip().lower()
    return next((key for key, words in table.items() if word in words), None)


def marketing_choice_of(text: str) -> str | None:
    """Whether a reply asks to stop or to resume marketing messages ("stop", "resume"), else None."""
    return _key_for(text, MARKETING_CHOICES)


def marketing_choice_reply(choice: str, member: Member | None) -> Reply:
    if member is None:
        return Text(_("You are not a member yet, so we send you no offers."))
    if choice == "stop":
        return Text(
            _(
                "Done: you will receive no more offers or greetings from us. Service reminders (points, "
                "tier, visits) continue. To undo, reply 恢复订阅 or change it in the mini-app under "
                "Me > Notifications."
            )
        )
    return Text(_("Done: you will receive our offers and greetings again. Reply 退订 to stop them."))


def intent_of(text: str) -> str | None:
    return _key_for(text, KEYWORDS)


def mini_link(page: str, label: str, query: str = "") -> str:
    """A text link that opens the mini-app page (web page where the mini-app is unavailable)."""
    appid = current_settings().MINIAPP_APP_ID
    path = PAGES[page] + (f"?{query}" if query else "")
    href = f"{H5_BASE.value()}/{PAGES[page]}" + (f"?{query}" if query else "")
    return f'<a data-miniprogram-appid="{appid}" data-miniprogram-path="{path}" href="{href}">{label}</a>'


def _date(moment: dt.datetime | dt.date | None) -> str:
    if moment is None:
        return ""
    day = to_business(moment).date() if isinstance(moment, dt.datetime) else moment
    return day.isoformat()


def points_reply(member: Member) -> Reply:
    balance = queries.balance(member.id)
    lines = [
        _(
            "Your points: %(available)s available, %(pending)s pending.",
            available=balance.available,
            pending=balance.pending,
        )
    ]
    if balance.expiring_30_days:
        lines.append(
            _(
                "%(points)s points expire within 30 days (first on %(date)s). Use them before they go.",
                points=balance.expiring_30_days,
                date=_date(balance.next_expiry_on),
            )
        )
    lines.append(mini_link("points", _("Points history and rewards")))
    return Text("\n".join(lines))


def tier_reply(member: Member) -> Reply:
    progress = queries.tier_progress(member.id)
    lines = [
        _(
            "You are a %(tier)s member with %(points)s tier points.",
            tier=tier_name(progress.tier),
            points=progress.tier_points,
        )
    ]
    if progress.next_tier:
        lines.append(
            _(
                "%(missing)s more tier points to %(next)s.",
                missing=progress.points_to_next,
                next=tier_name(progress.next_tier),
            )
        )
    if progress.review_on:
        lines.append(
            _(
                "Your tier is reviewed on %(date)s. One purchase, service visit, insurance renewal or "
                "successful referral before then keeps it.",
                date=_date(progress.review_on),
            )
        )
    return Text("\n".join(lines))


def _offer_line(offer: Offer, locale: str) -> str | None:
    """What is left of one benefit, as the mini-app shows it (None: not for this member now)."""
    name = localized(offer.benefit.name, locale)
    if offer.pays_with == "free":
        return _("%(name)s: unlimited", name=name)
    if offer.pays_with == "quota" or offer.reason == "quota_used_up":
        remaining = offer.entitlement.remaining if offer.entitlement else 0
        return _("%(name)s: %(count)s left this year", name=name, count=remaining)
    if offer.pays_with == "points":
        return _("%(name)s: %(points)s points", name=name, points=offer.benefit.points_price)
    return None


def benefits_reply(member: Member) -> Reply:
    """The tier's highlights, then what is left this membership year of each benefit (the catalog in force)."""
    tier = queries.tier_progress(member.id).tier
    lines = [_("Your %(tier)s benefits:", tier=tier_name(tier))]
    lines += [f"· {item}" for item in tier_highlights(tier)]
    left = [line for line in (_offer_line(o, member.locale) for o in availability.offers(member, tier)) if line]
    if left:
        lines.append(_("This membership year:"))
        lines += [f"· {line}" for line in left]
    lines.append(mini_link("benefits", _("See what is left this year and book")))
    return Text("\n".join(lines))


def booking_reply(member: Member | None = None) -> Reply:
    """The booking card, then the member's upcoming bookings (when, where), each opening the booking page."""
    articles = [
        Article(
            title=_("Book a service"),
            description=_("Maintenance, home test drive, pick-up and drop-off: choose a dealer and a time."),
            url=f"{H5_BASE.value()}/{PAGES['booking']}",
        )
    ]
    locale = member.locale if member is not None else "zh_CN"
    for row in booking.upcoming(member.id, limit=3) if member is not None else []:
        dealer = booking.dealer_of(row)
        when = to_business(row.slot.starts_at).strftime("%Y-%m-%d %H:%M") if row.slot else ""
        articles.append(
            Article(
                title=_("%(benefit)s, %(when)s", benefit=localized(row.benefit.name, locale), when=when),
                description=dealer.name if dealer else "",
                url=f"{H5_BASE.value()}/{PAGES['booking']}?id={row.id}",
            )
        )
    return Articles(articles)


def referral_reply(member: Member) -> Reply:
    """The referral card: my code and link, my referees' progress, rewards cooling (as /me/referrals)."""
    mine = referral_views.my_referrals(member)
    lines = [_("Your referral code: %(code)s", code=mine.code)]
    if mine.referees:
        delivered = sum(1 for line in mine.referees if line.milestone == "delivery")
        cooling = sum(line.reward_points for line in mine.referees if line.available_at is not None)
        lines.append(
            _(
                "Friends referred: %(count)s, cars delivered: %(delivered)s.",
                count=len(mine.referees),
                delivered=delivered,
            )
        )
        if cooling:
            lines.append(_("%(points)s reward points are in their cooling period.", points=cooling))
    lines.append(_("When a friend you refer buys a car, you earn 2,000 points."))
    return Articles([Article(title=_("Refer a friend"), description="\n".join(lines), url=mine.link)])


def help_reply() -> Reply:
    return Text(
        _(
            "Reply with 积分 (points), 等级 (tier), 权益 (benefits), 预约 (book a service), "
            "推荐 (refer a friend) or 客服 (talk to us)."
        )
    )


def join_prompt() -> Reply:
    return Text(
        _(
            "You are not a member yet. Join in one minute and get 500 welcome points: %(link)s",
            link=mini_link("join", _("Join now")),
        )
    )


def nearest_dealer_reply(latitude: float, longitude: float) -> Reply:
    ranked = nearest_dealers(latitude, longitude)
    if not ranked:
        return help_reply()
    lines = [_("Dealers near you:")]
    lines += [
        _(
            "%(name)s, %(distance)s km, %(address)s",
            name=dealer.name,
            distance=f"{km:.1f}",
            address=dealer.address or dealer.city,
        )
        for dealer, km in ranked
    ]
    return Text("\n".join(lines))


def answer(intent: str, member: Member | None) -> Reply:
    """The reply for an intent from a keyword or a menu click."""
    if intent == "agent":
        return TransferToAgent()
    if intent == "booking":
        return booking_reply(member)
    if member is None:
        return join_prompt()
    handlers = {"points": points_reply, "tier": tier_reply, "benefits": benefits_reply, "referral": referral_reply}
    return handlers[intent](member)


def welcome_reply(member: Member, *, credited: int = 0) -> Reply:
    """After activation or enrollment: tier, benefits, what was credited."""
    tier = current_tier(member.id)  # read once per transaction (the welcome gift's rules read it already)
    greeting = _("Welcome to the club, %(name)s!", name=member.name) if member.name else _("Welcome to the club!")
    lines = [greeting, _("You are a %(tier)s member. Your benefits:", tier=tier_name(tier))]
    lines += [f"· {item}" for item in tier_highlights(tier)]
    if credited:
        lines.append(_("%(points)s points have been credited to your account.", points=credited))
    lines.append(_("Earn points with every service visit, insurance renewal and referral."))
    lines.append(mini_link("home", _("Open the member center")))
    return Text("\n".join(lines))


def greeting_for_follower(member: Member | None) -> Reply:
    if member is None:
        return join_prompt()
    return Text(
        _("Welcome back! Reply 积分 to see your points.") + "\n" + mini_link("home", _("Open the member center"))
    )


def now() -> dt.datetime:
    return utcnow()
