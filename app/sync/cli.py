"""``flask dms …``: play the dealer system against a running server."""

from __future__ import annotations

import click
import requests
from flask.cli import AppGroup

from app.config import current_settings
from app.core.security import sign_timestamped
from app.sync.samples import sample_delivery_body

dms_cli = AppGroup("dms", help="Play the dealer system locally.")


@dms_cli.command("send-demo")
@click.option("--url", default="http://127.0.0.1:5000", show_default=True)
@click.option("--phone", default="13800138000", show_default=True)
@click.option("--event-id", default=None, help="Reuse an id to see a duplicate acknowledged.")
def dms_send_demo(url: str, phone: str, event_id: str | None) -> None:
    """Sign and POST a vehicle.delivered event to a running server."""
    body = sample_delivery_body(phone=phone, event_id=event_id)
    headers = {"Content-Type": "application/json", **sign_timestamped(current_settings().DMS_SECRET, body)}
    response = requests.post(f"{url}/api/v1/dms/events", data=body, headers=headers, timeout=10)
    click.echo(f"{response.status_code} {response.text}")
