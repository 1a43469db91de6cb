"""Identifiers people read and type: member numbers, mobile numbers, VINs, and their masks."""

from __future__ import annotations

import functools
import secrets
import unicodedata

import phonenumbers
from stdnum import luhn
from vininfo import Vin
from vininfo.exceptions import ValidationError as VinValidationError

from app.core.i18n import _l

MEMBER_NO_BODY_DIGITS = 10
#: New member numbers start with 9: mainland mobile numbers start with 1, so no new member number
#: can ever be read as a phone. Numbers minted before (any first digit but 0) keep working.
MEMBER_NO_PREFIX = "9"

#: What is wrong with a VIN, by ``vin_problem``'s answer, in words a member can act on.
VIN_MESSAGES = {
    "length": _l("A VIN has exactly 17 characters."),
    "characters": _l("A VIN uses digits and capital letters except I, O and Q."),
    "check_digit": _l("The VIN check digit (9th character) does not match."),
}


def new_member_number() -> str:
    """Eleven digits: ``9``, nine random digits and a Luhn check digit, e.g. ``93820194752``.

    Random rather than sequential so numbers reveal nothing about volume; the unique constraint
    on ``members.member_no`` catches the rare collision and the caller draws again. The leading 9
    keeps them apart from mobile numbers (which start with 1) however they are typed.
    """
    random_digits = MEMBER_NO_BODY_DIGITS - len(MEMBER_NO_PREFIX)
    body = MEMBER_NO_PREFIX + f"{secrets.randbelow(10**random_digits):0{random_digits}d}"
    return body + luhn.calc_check_digit(body)


def is_member_number(value: str) -> bool:
    """Shape and check digit, so a mistyped number is caught before any lookup. Legacy numbers
    (any first digit but 0) pass too; ``services.find_member`` tries a mobile number first."""
    return len(value) == MEMBER_NO_BODY_DIGITS + 1 and value.isdigit() and value[0] != "0" and luhn.is_valid(value)


_CN_MOBILE_TYPES = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)


def normalize_cn_mobile(value: str) -> str | None:
    """``+86 138-1234-1234`` → ``13812341234``; None unless it is a valid mainland mobile number."""
    try:
        parsed = phonenumbers.parse(value, "CN")
    except phonenumbers.NumberParseException:
        return None
    # For +86 (one region, CN) ``is_valid_number`` is ``number_type(...) != UNKNOWN`` over the same
    # metadata: asking for the type alone decides both, with the patterns matched once.
    if parsed.country_code != 86 or phonenumbers.number_type(parsed) not in _CN_MOBILE_TYPES:
        return None
    return str(parsed.national_number)


@functools.lru_cache(maxsize=65_536)
def mobile_prefix_valid(prefix7: str) -> bool:
    """Whether mobile numbers starting so are valid: libphonenumber decides mainland mobile
    ranges by their first digits, so one full check per 7-digit prefix serves every number."""
    return normalize_cn_mobile(prefix7 + "0000") is not None


def cn_mobile(value: str) -> str | None:
    """``normalize_cn_mobile``, answered from ``mobile_prefix_valid`` for the plain shape (exactly
    11 ASCII digits, the first a 1: what a dealer system sends); any other shape is parsed in full."""
    if len(value) == 11 and value.isascii() and value.isdigit() and value[0] == "1":
        return value if mobile_prefix_valid(value[:7]) else None
    return normalize_cn_mobile(value)


def mask_phone(phone: str | None) -> str | None:
    """``13812341234`` → ``138****1234``."""
    if not phone:
        return phone
    return phone[:3] + "****" + phone[-4:] if len(phone) >= 8 else "****"


def mask_name(name: str | None) -> str | None:
    """``张三丰`` → ``张**``; ``Li Lei`` → ``L*****``."""
    if not name:
        return name
    return name[0] + "*" * (len(name) - 1)


def mask_vin(vin: str | None) -> str | None:
    """``LFV2A21K5N3000101`` → ``LFV********000101``: the serial stays readable on the phone."""
    if not vin:
        return vin
    return vin[:3] + "*" * max(0, len(vin) - 9) + vin[-6:] if len(vin) > 9 else "*" * len(vin)


def mask_plate(plate: str | None) -> str | None:
    """``吉A12345`` → ``吉A***45``."""
    if not plate:
        return plate
    return plate[:2] + "***" + plate[-2:] if len(plate) > 4 else "*" * len(plate)


def mask_address(address: str | None) -> str | None:
    """``吉林省长春市绿园区东风大街1号`` → ``吉林省长春市****``: the city stays, the street and number go."""
    if not address:
        return address
    return address[:6] + "****" if len(address) > 6 else "****"


def normalize_address(value: str) -> str:
    """The address as compared for households: full-width folded to half-width (NFKC), lower case,
    without spaces, punctuation or symbols, so ``长春市 绿园区，西安大路１６８８号`` matches
    ``长春市绿园区西安大路1688号``."""
    folded = unicodedata.normalize("NFKC", value).lower()
    return "".join(ch for ch in folded if unicodedata.category(ch)[0] not in "PZSC")


def normalize_vin(value: str) -> str:
    return value.strip().upper()


#: First characters of the WMIs whose region makes position 9 a check digit: North America
#: (1–5: United States, Canada, Mexico; 49 CFR 565) and China (L; GB 16735). Elsewhere (Europe's
#: W, V, S…, Japan's J, Korea's K) position 9 is free: a Golf built for Europe reads ``WVWZZZ…``
#: with a letter there, and imported cars like it are delivered too.
CHECK_DIGIT_REGIONS = frozenset("12345L")


def vin_problem(vin: str) -> str | None:
    """Why ``vin`` is not a valid 17-character VIN, or None: the length, the characters (no I, O,
    Q), and the check digit where the manufacturer's region mandates one (``CHECK_DIGIT_REGIONS``)."""
    if len(vin) != 17:
        return "length"
    try:
        parsed = Vin(vin)
    except VinValidationError:
        return "characters"
    if parsed.region_code in CHECK_DIGIT_REGIONS and not parsed.verify_checksum():
        return "check_digit"
    return None


def vin_with_check_digit(prefix8: str, suffix8: str) -> str:
    """Compose a valid VIN from positions 1–8 and 10–17 (demo data and tests)."""
    for digit in "0123456789X":
        candidate = prefix8 + digit + suffix8
        if vin_problem(candidate) is None:
            return candidate
    raise ValueError(f"no check digit makes {prefix8}?{suffix8} a valid VIN")
