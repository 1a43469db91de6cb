"""``flask mall …`` and the mall walk-through of ``make run`` (``flask demo walkthrough mall``)."""

from __future__ import annotations

import sqlalchemy as sa

from app.core.audit import AuditEntry
from app.core.clock import business_today
from app.core.db import db
from app.mall import catalog
from app.mall.models import RedemptionOrder, Voucher
from app.members.services import find_by_phone
from app.points.queries import balance


def test_the_walkthrough_redeems_scans_once_and_a_cancel_gives_points_and_stock_back(app, app_ctx, tmp_path):
    runner = app.test_cli_runner()
    assert "'mall_items': 6" in runner.invoke(args=["demo", "seed"]).output
    member = find_by_phone("13900000001")
    before = balance(member.id).available
    result = runner.invoke(args=["demo", "walkthrough", "mall", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("dealer SV0101 scanned it: voucher used, order completed") for line in lines)
    assert any(line.startswith("second scan refused: voucher_used") for line in lines), lines
    cancelled = next(line for line in lines if line.startswith("cancelled it"))
    umbrella_stock = catalog.item_by_code("umbrella").stock
    assert (
        f"balance {before - 1000} (was {before - 1000})" in cancelled
        and f"stock {umbrella_stock} (was 200)" in cancelled
    )
    png = next(tmp_path.glob("voucher-*.png"))
    assert png.read_bytes().startswith(b"\x89PNG") and str(png) in result.output
    paid = next(line for line in lines if line.startswith("paid in the sandbox"))
    assert "answered [200, 200]: order fulfilled with 1 voucher(s)" in paid, lines
    # the coupon and the oil kit stay spent, the umbrella came back
    assert balance(member.id).available == before - 1000 - 300
    assert sorted(db.session.scalars(sa.select(Voucher.status))) == ["issued", "used"]
    statuses = sorted(db.session.scalars(sa.select(RedemptionOrder.status)))
    assert statuses == ["cancelled", "completed", "fulfilled"]
    assert db.session.scalar(sa.select(sa.func.count()).where(AuditEntry.action == "mall.voucher_used")) == 1


def test_the_walkthrough_asks_for_the_demo_data_first(app, app_ctx, tmp_path):
    result = app.test_cli_runner().invoke(args=["demo", "walkthrough", "mall", "--out", str(tmp_path)])
    assert result.exit_code == 1 and "flask demo seed" in result.output


def test_mall_commands_add_restock_flash_and_report(app, app_ctx, tmp_path):
    runner = app.test_cli_runner()
    added = runner.invoke(
        args=["mall", "add", "mug", "--kind", "physical", "--name-zh", "马克杯", "--points", "300", "--stock", "5"]
    )
    assert added.exit_code == 0, added.output
    assert runner.invoke(args=["mall", "stock", "mug", "7"]).output.strip() == "mug: stock 12"
    assert runner.invoke(args=["mall", "stock", "mug", "--", "-20"]).exit_code == 1
    assert "flash offer" in runner.invoke(args=["mall", "flash", "mug", "--points", "100", "--quantity", "2"]).output
    assert "mug\tphysical\t300 pts\tstock 12" in runner.invoke(args=["mall", "list"]).output
    report = runner.invoke(args=["mall", "report", f"{business_today():%Y-%m}", "--csv"])
    assert report.output.splitlines() == ["month,item,name,kind,orders,units,points,points_value_yuan,cost_yuan"]
    assert runner.invoke(args=["mall", "report", "2026-13"]).exit_code == 1


def test_partner_codes_from_the_command_line_show_progress_and_refused_rows(app, app_ctx, tmp_path):
    runner = app.test_cli_runner()
    runner.invoke(
        args=["mall", "add", "tea", "--kind", "partner_voucher", "--name-zh", "茶券", "--points", "50", "--stock", "0"]
    )
    path = tmp_path / "codes.csv"
    path.write_text("code,expires_on\nTEA-1,\nTEA-2,2027-01-31\nTEA-1,\n", encoding="utf-8")
    result = runner.invoke(args=["mall", "upload-codes", "tea", str(path)])
    assert result.exit_code == 0, result.output
    assert "2 codes accepted, 1 refused" in result.output and "line 4: duplicate code" in result.output
    assert catalog.item_by_code("tea").stock == 2
