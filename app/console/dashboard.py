"""The operator dashboard page and its CSV exports: the figures come from ``app/reporting``
(daily rollups only); this module parses the date range, scopes it to the operator and renders."""

from __future__ import annotations

import csv
import io
from typing import Any

from flask import render_template, request
from flask_babel import get_locale
from werkzeug.wrappers import Response

from app.console import labels
from app.console.session import console_view, current
from app.console.views import bp
from app.core import audit
from app.core.errors import ValidationFailed
from app.core.i18n import catalog_name
from app.reporting import dashboard
from app.reporting.dashboard import Chart

#: HQ management and a dealer's member manager (his dealer's figures); agents work cases, not figures.
ROLES = ("supervisor", "operator", "dealer_manager")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _label_of(tables: str | tuple[str, ...], code: Any) -> str:
    """One code's label, or a tuple of codes' labels joined (a notification's kind · channel)."""
    if isinstance(tables, str):
        return str(labels.label(getattr(labels, tables), code))
    return " · ".join(_label_of(table, part) for table, part in zip(tables, code, strict=True))


def _labelled(chart: Chart) -> Chart:
    """The codes of the first column (tiers, categories, stages) as the operator's language says them."""
    if chart.labels:
        chart.rows = [[_label_of(chart.labels, row[0]), *row[1:]] for row in chart.rows]
    chart.columns = [str(column) for column in chart.columns]
    chart.title = str(chart.title)
    return chart


def _charts_for(names: list[str]) -> tuple[dashboard.Period, list[Chart]]:
    when = dashboard.period(request.args.get("from"), request.args.get("to"))
    scope = dashboard.scope_for(current())
    locale = catalog_name(get_locale())
    return when, [_labelled(dashboard.chart(name, when, scope, locale=locale)) for name in names]


@bp.route("/dashboard")
@console_view(*ROLES, scope="dealer")
def dashboard_page() -> Any:
    """Every chart for the date range (default: the last 30 days), from the daily rollups."""
    try:
        when, charts = _charts_for(list(dashboard.CHARTS))
    except ValidationFailed as error:
        when = dashboard.period(None, None)
        return render_template(
            "console/dashboard.html", charts=[], when=when, errors=error.fields, asked=request.args
        ), error.status
    return render_template("console/dashboard.html", charts=charts, when=when, errors={}, asked=request.args)


def _cell(value: Any) -> Any:
    """A text cell a spreadsheet would read as a formula is quoted (CSV injection)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


@bp.route("/dashboard/<name>.csv")
@console_view(*ROLES, scope="dealer")
def dashboard_csv(name: str) -> Response:
    """One chart's numbers as CSV (UTF-8 with a BOM for spreadsheet apps); the export is audited."""
    when, (chart,) = _charts_for([name])
    out = io.StringIO()
    out.write("\ufeff")
    writer = csv.writer(out)
    writer.writerow(chart.columns)
    writer.writerows([_cell(value) for value in row] for row in chart.rows)
    operator = current()
    audit.record(
        actor=("staff", operator.actor),
        action="dashboard.exported",
        subject=("chart", name),
        details={"from": when.first.isoformat(), "to": when.last.isoformat(), "dealer_id": operator.dealer_id},
    )
    filename = f"{name}-{when.first:%Y%m%d}-{when.last:%Y%m%d}.csv"
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
