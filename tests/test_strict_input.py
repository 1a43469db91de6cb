"""Inputs are matched whole (a trailing newline is not "the end"), and CSV exports are safe to open."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest

from app.core.db import db
from app.core.schemas import parse_month
from app.points import settlement
from app.points.models import DealerSettlement
from app.sync.samples import sample_delivery
from tests import factories


def auth(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("value", ["2026-11\n", "2026-11\r\n", " 2026-11", "2026-11 ", "2026-1", "2026-13"])
def test_a_month_is_matched_whole(value):
    assert parse_month(value) is None
    assert parse_month("2026-11") == dt.date(2026, 11, 1)


@pytest.mark.parametrize("suffix", ["", ".csv"])
def test_settlement_paths_with_a_newline_in_the_month_are_a_422(client, app_ctx, suffix):
    _operator, token = factories.operator("operator")
    response = client.get(f"/api/v1/program/settlements/2026-11%0A{suffix}", headers=auth(token))
    assert response.status_code == 422, response.get_data(as_text=True)[:300]
    assert response.json["error"]["fields"] == {"month": ["请使用 YYYY-MM 格式。"]}


def test_identifiers_with_a_trailing_newline_are_refused(post_dms, app_ctx):
    factories.dealer(code="D0101")
    event = sample_delivery(phone="13800138000")
    event["event_id"] = event["event_id"] + "\n"
    response = post_dms(event)
    assert response.status_code == 422
    assert "event_id" in response.json["error"]["fields"]


def test_the_cli_refuses_a_month_with_a_newline(app):
    result = app.test_cli_runner().invoke(args=["points", "settle", "2026-11\n"])
    assert result.exit_code == 2
    assert "YYYY-MM" in result.output


@pytest.mark.parametrize(
    ("stored", "exported"),
    [
        ('=HYPERLINK("http://x","y")', '\'=HYPERLINK("http://x","y")'),
        ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tTAB", "'\tTAB"),
        ("\rCR", "'\rCR"),
        ("BANK-42", "BANK-42"),
        ("宝马 4S 店", "宝马 4S 店"),
    ],
)
def test_settlement_csv_cells_cannot_become_formulas(app_ctx, stored, exported):
    dealer = factories.dealer(code="D0102", name=stored)
    month = dt.date(2026, 10, 1)
    db.session.add(
        DealerSettlement(
            dealer_id=dealer.id,
            month=month,
            status="paid",
            funded_points=0,
            redeemed_points=15,
            point_value_fen=20,
            net_fen=-300,
            payment_ref=stored,
            reviewed_by=stored,
        )
    )
    db.session.flush()
    [_header, row] = list(csv.reader(io.StringIO(settlement.to_csv(month))))
    assert row[2] == exported  # dealer_name
    assert row[9] == exported  # reviewed_by
    assert row[12] == exported  # payment_ref
    assert (row[6], row[7]) == ("-300", "-3.00")  # plain negative numbers stay numbers
