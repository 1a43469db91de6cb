"""Identifiers people type: member numbers, VINs, mobile numbers, masks."""

import random

import pytest

from app.members.identifiers import (
    cn_mobile,
    is_member_number,
    mask_name,
    mask_phone,
    new_member_number,
    normalize_address,
    normalize_cn_mobile,
    vin_problem,
    vin_with_check_digit,
)


def test_member_numbers_carry_a_check_digit_that_catches_typos():
    numbers = {new_member_number() for _ in range(200)}
    assert len(numbers) == 200
    for number in numbers:
        assert is_member_number(number)
        assert number[0] != "0"
        typo = number[:-2] + str((int(number[-2]) + 1) % 10) + number[-1]
        assert not is_member_number(typo)


@pytest.mark.parametrize(
    ("vin", "problem"),
    [
        ("LSVAM4187C2184847", None),  # a real SAIC-VW VIN
        ("LSVAM4187C218484", "length"),
        ("LSVAM4I87C2184847", "characters"),  # I is not allowed
        ("LSVAM4188C2184847", "check_digit"),
    ],
)
def test_vin_validation_includes_the_check_digit(vin, problem):
    assert vin_problem(vin) == problem


def test_composed_vins_are_valid():
    assert vin_problem(vin_with_check_digit("LFV2A21K", "D3000001")) is None


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("13812341234", "13812341234"),
        ("+86 138-1234-1234", "13812341234"),
        ("008613812341234", "13812341234"),
        ("1381234123", None),
        ("01012345678", None),  # Beijing landline
        ("+1 415 555 0100", None),
        ("not a phone", None),
    ],
)
def test_mainland_mobile_numbers_are_normalized(raw, normalized):
    assert normalize_cn_mobile(raw) == normalized


def test_masks():
    assert mask_phone("13812341234") == "138****1234"
    assert mask_name("张三丰") == "张**"
    assert mask_name(None) is None


@pytest.mark.parametrize(
    ("vin", "problem"),
    [
        ("WVGZZZ5NZJM131395", None),  # VW Tiguan built for Europe: no check digit (Z in position 9)
        ("VF1RFB00X56123456", None),  # Renault, France
        ("SALWA2FK7HA123456", None),  # Land Rover, UK
        ("JHMCM56557C404453", None),  # Honda, Japan: a North American-market VIN with its check digit
        ("JHMCM56558C404453", None),  # Japan does not mandate one: not enforced
        ("1M8GDM9AXKP042788", None),  # United States: check digit X, correct
        ("1M8GDM9A1KP042788", "check_digit"),  # North America (1-5) enforces it
        ("5YJ3E1EA7KF317000", "check_digit"),
        ("LSVAM4188C2184847", "check_digit"),  # China (L) enforces it
        ("WVGZZZ5NZJM13139", "length"),
        ("WVGZZZ5NZJM1313O5", "characters"),  # O is never allowed
    ],
)
def test_the_check_digit_is_enforced_only_where_the_region_uses_one(vin, problem):
    assert vin_problem(vin) == problem


def test_an_imported_european_car_is_delivered(post_dms, app_ctx):
    from app.sync.samples import sample_delivery
    from tests import factories

    factories.dealer(code="D0101")
    document = sample_delivery(phone="13800138000")
    document["payload"]["vin"] = "WVGZZZ5NZJM131395"
    response = post_dms(document)
    assert response.status_code == 202, response.json


@pytest.mark.parametrize(
    "typed",
    [
        "长春市绿园区西安大路1688号",
        "长春市 绿园区 西安大路 1688 号",
        "长春市，绿园区・西安大路１６８８号。",
        " 长春市绿园区\t西安大路1688号\n",
    ],
)
def test_an_address_compares_without_spaces_punctuation_or_full_width_forms(typed):
    assert normalize_address(typed) == "长春市绿园区西安大路1688号"


def test_address_normalization_folds_case_and_keeps_what_tells_addresses_apart():
    assert normalize_address("Ｒｏｏｍ 12-B, Tower A") == normalize_address("room12b towera")
    assert normalize_address("西安大路1688号") != normalize_address("西安大路1690号")
    assert normalize_address(" ，。 ") == ""


def test_the_plain_mobile_shortcut_agrees_with_libphonenumber():
    """``cn_mobile`` (DMS intake) answers 11 ASCII digits from a 7-digit prefix check: every 5-digit
    prefix and random numbers agree with the full parse; other shapes go through it unchanged."""
    rng = random.Random(18)
    samples = [f"1{prefix:05d}{rng.randrange(10**5):05d}" for prefix in range(0, 100_000, 7)]
    samples += [f"1{rng.randrange(10**10):010d}" for _ in range(3000)]
    samples += ["13800138000", "12345678901", "10086", "023800138000", "+86 138-0013-8000", "8613800138000"]
    samples += ["１３８００１３８０００", "1380013800０", "138\n0013\n8000", " 13800138000", "13800138000 "]
    for raw in samples:
        assert cn_mobile(raw) == normalize_cn_mobile(raw), raw
    assert cn_mobile("13800138000") == "13800138000"
    assert cn_mobile("10000000000") is None
