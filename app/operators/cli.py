"""``flask operators create | deactivate | reset-password``: back-office accounts."""

from __future__ import annotations

import getpass

import click
from flask.cli import AppGroup

from app.core.db import db
from app.dealers.services import dealer_by_code
from app.operators import auth
from app.operators.models import ROLES, Operator

operators_cli = AppGroup("operators", help="Back-office accounts.")


@operators_cli.command("create")
@click.argument("username")
@click.option("--name", required=True)
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--dealer", "dealer_code", default=None, help="Dealer code (dealer managers).")
@click.password_option()
def create(username: str, name: str, role: str, dealer_code: str | None, password: str) -> None:
    dealer = dealer_by_code(dealer_code) if dealer_code else None
    if dealer_code and dealer is None:
        raise click.ClickException(f"unknown dealer {dealer_code}")
    try:
        auth.create_operator(username, name=name, role=role, password=password, dealer_id=dealer.id if dealer else None)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    db.session.commit()
    click.echo(f"{role} {username} created")


def _operator(username: str) -> Operator:
    operator = auth.by_username(username)
    if operator is None:
        raise click.ClickException(f"unknown operator {username}")
    return operator


@operators_cli.command("deactivate")
@click.argument("username")
@click.option("--reason", required=True, help="Kept in the audit log.")
def deactivate(username: str, reason: str) -> None:
    """The account can no longer sign in; its tokens stop working at once."""
    auth.deactivate(_operator(username), actor=("cli", getpass.getuser()), reason=reason)
    db.session.commit()
    click.echo(f"{username} deactivated")


@operators_cli.command("reset-password")
@click.argument("username")
@click.option("--reason", required=True, help="Kept in the audit log.")
@click.password_option()
def reset_password(username: str, reason: str, password: str) -> None:
    """Set a new password; the account's tokens stop working and a lockout is lifted."""
    auth.reset_password(_operator(username), password, actor=("cli", getpass.getuser()), reason=reason)
    db.session.commit()
    click.echo(f"password of {username} reset")
