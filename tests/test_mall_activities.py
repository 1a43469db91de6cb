# ruff: noqa: F811 - the mini-app fixtures come from tests/test_mall_api.py
"""Content activities through the mini-app (SPEC §3): an article read counts once per article, a
share once per content and day, a survey once per survey, each within its rule's caps (the default
rules of migration i6); a capped activity is a localized 409; long references fit the ledger."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from app.core.clock import utcnow
from app.core.db import db
from app.points import queries
from app.points.activities import credit_activity, source_ref
from app.points.models import PointEntry
from tests import factories
from tests.test_mall_api import member, mini, wechat  # noqa: F401 - fixtures

ACTIVITIES = "/api/v1/me/activities"


def done(mini, activity: str, ref: str):
    return mini.post(ACTIVITIES, json={"activity": activity, "ref": ref})


def test_an_article_counts_once_and_the_daily_cap_is_a_localized_refusal(mini, member):
    first = done(mini, "article_read", "article-1")
    assert first.status_code == 200 and first.json == {
        "activity": "article_read",
        "ref": "article-1",
        "points": 10,
        "new": True,
    }
    again = done(mini, "article_read", "article-1")
    assert again.status_code == 200 and (again.json["points"], again.json["new"]) == (0, False)
    assert done(mini, "article_read", "article-2").json["points"] == 10
    assert done(mini, "article_read", "article-3").json["points"] == 10  # 30 a day: the cap is reached
    capped = done(mini, "article_read", "article-4")
    assert capped.status_code == 409 and capped.json["error"]["code"] == "activity_capped"
    assert capped.json["error"]["message"] == "本活动当前可得的积分已全部领取，感谢参与。"
    assert queries.balance(member.id).available == 1030


def test_a_share_counts_once_per_content_and_day(mini, member, time_machine):
    assert done(mini, "content_shared", "video-7").json["points"] == 20
    assert done(mini, "content_shared", "video-7").json["new"] is False
    time_machine.move_to(utcnow() + dt.timedelta(days=1))
    mini.sign_in("o-mall-1")
    assert done(mini, "content_shared", "video-7").json["points"] == 20  # a new day
    assert queries.balance(member.id).available == 1040


def test_unknown_activities_and_bad_ids_are_field_errors(mini, member):
    assert done(mini, "lottery", "x").json["error"]["fields"].keys() == {"activity"}
    assert done(mini, "article_read", "a" * 41).json["error"]["fields"].keys() == {"ref"}


def test_a_long_reference_is_kept_as_a_digest_and_still_counts_once(app_ctx):
    person = factories.member()
    ref = "survey:" + "s" * 60
    assert len(f"{person.id}:{ref}") > 64 and len(source_ref(person.id, ref)) <= 64
    first = credit_activity(person, "survey", ref=ref)
    again = credit_activity(person, "survey", ref=ref)
    assert first.points == 100 and again.repeated and again.points == 0
    refs = db.session.scalars(
        sa.select(PointEntry.source_ref).where(
            PointEntry.member_id == person.id, PointEntry.source_type == "activity.survey"
        )
    )
    assert [len(r) <= 64 for r in refs] == [True]
