"""Labels of the codes the console shows (reason codes, categories, statuses, audit actions)."""

from __future__ import annotations

from typing import Any

from app.core.i18n import _l
from app.tiers.display import TIER_NAMES

REVEAL_REASONS = {
    "caller_verification": _l("Verify the caller's identity"),
    "complaint_handling": _l("Handle a complaint"),
    "callback_request": _l("Call the member back"),
    "data_correction": _l("Correct the member's data"),
    "legal_request": _l("Legal or regulatory request"),
}
ADJUSTMENT_REASONS = {
    "missing_points": _l("Missing points"),
    "goodwill": _l("Goodwill"),
    "complaint_compensation": _l("Complaint compensation"),
    "system_error": _l("System error"),
    "fraud_correction": _l("Fraud correction"),
    "duplicate_award": _l("Duplicate award"),
}
COMPLAINT_CATEGORIES = {
    "points_missing": _l("Points missing"),
    "points_expired": _l("Points expired"),
    "tier": _l("Tier"),
    "benefit": _l("Benefits"),
    "redemption": _l("Redemption"),
    "service_quality": _l("Service quality"),
    "sales": _l("Sales"),
    "notification": _l("Notifications"),
    "app_problem": _l("Mini-app problem"),
    "privacy": _l("Privacy"),
    "red_packet": _l("Red packets"),
    "other": _l("Other"),
}
COMPLAINT_STATUSES = {
    "open": _l("Open"),
    "in_progress": _l("In progress"),
    "resolved": _l("Resolved"),
    "closed": _l("Closed"),
}
MEMBER_STATUSES = {
    "pre_enrolled": _l("Pre-enrolled"),
    "active": _l("Active"),
    "frozen": _l("Frozen"),
    "closed": _l("Closed"),
}
ROLES = {
    "agent": _l("Customer-service agent"),
    "supervisor": _l("Supervisor"),
    "dealer_manager": _l("Dealer member manager"),
    "operator": _l("Program operator"),
}
LOOKUP_KINDS = {
    "phone": _l("Mobile number"),
    "member_no": _l("Member number"),
    "vin": _l("VIN"),
    "plate": _l("Plate"),
    "openid": _l("WeChat openid"),
}
AUDIT_ACTIONS = {
    "member.read": _l("Viewed the record"),
    "member.lookup": _l("Found in a look-up"),
    "member.revealed": _l("Revealed personal data"),
    "member.frozen": _l("Froze the membership"),
    "member.unfrozen": _l("Unfroze the membership"),
    "points.adjustment_requested": _l("Requested a points adjustment"),
    "points.adjustment_approved": _l("Approved a points adjustment"),
    "points.adjustment_rejected": _l("Rejected a points adjustment"),
    "complaint.logged": _l("Logged a complaint"),
    "complaint.updated": _l("Updated a complaint"),
    "booking.cancelled_for_member": _l("Cancelled a booking for the member"),
    "member.merge_requested": _l("Requested a merge"),
    "member.merge_rejected": _l("Rejected a merge"),
    "member.merged": _l("Merged another member into this one"),
    "member.merged_away": _l("Merged into another member"),
    "callback_task.claimed": _l("Claimed a callback task"),
    "callback_task.noted": _l("Noted a callback attempt"),
    "callback_task.closed": _l("Closed a callback task"),
}
REFERRAL_STAGES = {
    "lead": _l("Referred (lead)"),
    "test_drive": _l("Test drive"),
    "order": _l("Order"),
    "delivery": _l("Delivery"),
}
TIERS = TIER_NAMES  # the names the member sees (chat, mini-app, notices)
#: ``Notification.kind``: the kinds with a message template (``app.care.channels.TEMPLATE_KINDS``) and the chat reply.
NOTIFICATION_KINDS = {
    "tier_upgrade": _l("Tier upgrade"),
    "tier_dropped": _l("Tier lowered"),
    "tier_at_risk": _l("Tier at risk"),
    "points_expiring": _l("Points expiring"),
    "anniversary": _l("Membership anniversary"),
    "welcome": _l("Welcome message"),
    "birthday": _l("Birthday"),
    "maintenance_due": _l("Maintenance due"),
    "insurance_renewal": _l("Insurance renewal"),
    "booking_confirmed": _l("Booking confirmed"),
    "booking_reminder": _l("Booking reminder"),
    "rating_request": _l("Rating request"),
    "win_back": _l("Win-back"),
    "referral_milestone": _l("Referral milestone"),
    "referral_reward": _l("Referral reward"),
    "chat_reply": _l("Chat reply"),
}
#: ``Notification.channel`` (``app.care.channels``).
NOTIFICATION_CHANNELS = {
    "miniapp_subscribe": _l("Mini-app subscribe message"),
    "official_template": _l("Service-account template message"),
    "official_custom": _l("Service-account customer-service message"),
    "sms": _l("SMS"),
}


def label(table: dict[str, Any], code: str | None) -> Any:
    """The label of a code, or the code itself when the table does not know it (an operator's new code)."""
    if code is None:
        return ""
    return table.get(code, code)
