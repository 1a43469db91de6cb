"""Care (会员关怀): reminders and notifications to members, subscribe-message grants."""

from __future__ import annotations

from flask import Flask


def register(app: Flask) -> None:
    """Subscription and preference endpoints, the back office's callback tasks and notification
    views, ``flask care``, the planners and the dispatcher, and subscriptions to other packages'
    events (``care.events``)."""
    from app.care import api, cli, console, cs_api, dispatch, events, merging, notify, planning, sms_api  # noqa: F401 - console: member-360 tabs; events, merging: subscribers, merge participant
    from app.core.http import api_of
    from app.jobs.schedule import periodic

    api_of(app).register_blueprint(api.blp)
    api_of(app).register_blueprint(cs_api.blp)
    api_of(app).register_blueprint(sms_api.blp)
    app.cli.add_command(cli.care_cli)
    console.register_tabs()
    periodic(
        planning.plan_todays_reminders,
        "0 3 * * *",
        "judge lifecycle stages, plan the day's reminders (sent from 09:00)",
    )
    periodic(notify.send_due_notifications, "* * * * *", "send due notifications (reminders, held, retries)")
    periodic(dispatch.sweep_stalled_sends, "*/5 * * * *", "fail sends a dead dispatcher left in flight")
