"""The set-based half of a club-import chunk: staged rows (already checked and encrypted) become
leads, matches, members, consents, cars and ownerships in a few statements.

Portable SQL (PostgreSQL, and SQLite for ``make run``): "the first row per key" is a
``row_number()`` window rather than ``DISTINCT ON``; PostgreSQL loads the staging
table with ``COPY``, SQLite with one multi-row insert. Steps, per chunk, in the caller's transaction:

1. rows without recorded consent become ``consent_leads`` (one per dealer and phone), not members;
2. rows match members by phone, else by VIN when the car's current owner has no phone on file
   (that owner is this person); a car owned by someone else — in the database, or by an earlier
   row of the file with another phone — makes the row a ``vin_other_owner`` conflict;
3. one new member per new phone (the first row wins; later rows with that phone match it) with a
   member number drawn in Python with the row (redrawn here if it collides), and its points account;
4. matched members get blank name, gender and birthday filled (never overwritten);
5. the club's consent with its provenance (channel ``dealer_club``, the club's policy version,
   ``stated_at``), only for purposes the member has no decision on yet: any recorded one is newer;
6. cars are created or found by VIN and linked when they have no current owner.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from app.core.db import UTCDateTime, db
from app.dealers.models import Dealer
from app.members.identifiers import new_member_number

COLUMNS = (
    "row_no",
    "member_no",
    "phone_index",
    "phone_enc",
    "name_enc",
    "gender",
    "birthday_enc",
    "vin_index",
    "vin_enc",
    "plate_index",
    "plate_enc",
    "model_name",
    "consent",
    "marketing",
    "stated_at",
    "joined_at",
    "joined_on",
)
_TYPES = {"stated_at": UTCDateTime(), "joined_at": UTCDateTime(), "now": UTCDateTime(), "joined_on": sa.Date()}
_TYPES |= {"today": sa.Date()}
#: Rows that became (or matched) a member in this chunk.
MEMBER_ROWS = "outcome IN ('created', 'matched')"


def _sql(statement: str, **params: Any) -> sa.CursorResult[Any]:
    text = sa.text(statement)
    typed = [sa.bindparam(name, type_=_TYPES[name]) for name in params if name in _TYPES]
    return db.session.execute(text.bindparams(*typed) if typed else text, params)


def _first(key: str, where: str) -> str:
    """``s`` is the first row (lowest ``row_no``) among the rows ``where`` sharing its ``key``: one
    window over the chunk (a correlated ``min`` per row would be quadratic on unindexed keys)."""
    window = f"row_number() OVER (PARTITION BY e.{key} ORDER BY e.row_no)"
    numbered = f"SELECT e.row_no, {window} AS n FROM club_stage e WHERE {where.format(t='e')}"  # noqa: S608
    return f"s.row_no IN (SELECT w.row_no FROM ({numbered}) w WHERE w.n = 1)"  # noqa: S608 - fixed fragments


#: Memory for the staging table (PostgreSQL's default 8 MB is less than a chunk's rows with their
#: ciphertexts and the updated versions of them, so every statement re-read it from temp files).
TEMP_BUFFERS = "256MB"


def _roomy_temp_buffers() -> None:
    """Raise ``temp_buffers`` for this connection; PostgreSQL allows it only before the session's
    first temporary table, so on a connection that already had one the default stays."""
    if db.dialect != "postgresql":
        return
    try:
        with db.session.begin_nested():
            _sql("SELECT set_config('temp_buffers', :size, false)", size=TEMP_BUFFERS)
    except sa.exc.DBAPIError:
        pass


def load_stage(staged: list[tuple[Any, ...]]) -> None:
    """A fresh staging table holding the chunk's rows."""
    _roomy_temp_buffers()
    _sql("DROP TABLE IF EXISTS club_stage")
    _sql(
        """CREATE TEMP TABLE club_stage (
             row_no int PRIMARY KEY, member_no text, phone_index text NOT NULL, phone_enc text NOT NULL,
             name_enc text, gender text, birthday_enc text, vin_index text, vin_enc text,
             plate_index text, plate_enc text, model_name text, consent boolean NOT NULL, marketing boolean,
             stated_at timestamptz, joined_at timestamptz, joined_on date,
             member_id bigint, vehicle_id bigint, owner_id bigint, owner_has_phone boolean, outcome text
           )"""
    )
    if staged and db.dialect == "postgresql":
        raw = db.session.connection().connection.driver_connection
        with raw.cursor() as cursor, cursor.copy(f"COPY club_stage ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row in staged:
                copy.write_row(row)
    elif staged:
        names, values = ", ".join(COLUMNS), ", ".join(":" + c for c in COLUMNS)
        insert = f"INSERT INTO club_stage ({names}) VALUES ({values})"  # noqa: S608 - fixed column names
        db.session.execute(
            sa.text(insert).bindparams(*[sa.bindparam(c, type_=_TYPES[c]) for c in COLUMNS if c in _TYPES]),
            [dict(zip(COLUMNS, row, strict=True)) for row in staged],
        )
    _sql("CREATE INDEX club_stage_phone ON club_stage (phone_index)")
    _sql("CREATE INDEX club_stage_vin ON club_stage (vin_index)")
    _sql("ANALYZE club_stage")


def resolve(dealer: Dealer, run_id: int | None, now: dt.datetime) -> int:
    """Steps 1–2: leads, matches by phone and VIN, conflicts. Returns the leads created."""
    _sql("UPDATE club_stage SET member_id = m.id FROM members m WHERE m.phone_index = club_stage.phone_index")
    lead_rows = "NOT {t}.consent AND {t}.member_id IS NULL"
    leads = _sql(
        f"""INSERT INTO consent_leads (dealer_id, phone, phone_index, name, vin, vin_index, import_run_id, row_no,
                                      status, created_at)
            SELECT :dealer, phone_enc, phone_index, name_enc, vin_enc, vin_index, :run, row_no, 'open', :now
            FROM club_stage s
            WHERE {lead_rows.format(t="s")} AND {_first("phone_index", lead_rows)}
              AND NOT EXISTS (SELECT 1 FROM club_stage c WHERE c.consent AND c.phone_index = s.phone_index)
            ON CONFLICT (dealer_id, phone_index) DO NOTHING""",  # noqa: S608 - fixed fragments
        dealer=dealer.id,
        run=run_id,
        now=now,
    ).rowcount
    _sql(
        "UPDATE club_stage SET outcome = CASE WHEN member_id IS NULL THEN 'lead' ELSE 'known_without_consent' END"
        " WHERE NOT consent"
    )
    _sql(
        "UPDATE club_stage SET vehicle_id = v.id FROM vehicles v"
        " WHERE club_stage.outcome IS NULL AND v.vin_index = club_stage.vin_index"
    )
    _sql(
        """UPDATE club_stage SET owner_id = o.member_id, owner_has_phone = (m.phone_index IS NOT NULL)
           FROM ownerships o JOIN members m ON m.id = o.member_id
           WHERE o.vehicle_id = club_stage.vehicle_id AND o.role = 'owner' AND o.ended_on IS NULL"""
    )
    # The same car under two phones in the file: the first row keeps it.
    _sql(
        """UPDATE club_stage SET outcome = 'vin_other_owner'
           WHERE outcome IS NULL AND vin_index IS NOT NULL AND EXISTS (
             SELECT 1 FROM club_stage e WHERE e.consent AND e.vin_index = club_stage.vin_index
             AND e.row_no < club_stage.row_no AND e.phone_index <> club_stage.phone_index)"""
    )
    _adopt_phoneless_owners(now)
    _sql(
        """UPDATE club_stage SET outcome = 'vin_other_owner' WHERE outcome IS NULL AND owner_id IS NOT NULL
           AND (member_id IS NULL OR member_id <> owner_id)"""
    )
    return int(leads)


def _adopt_phoneless_owners(now: dt.datetime) -> None:
    """A car whose current owner has no phone (an earlier import, a QR prospect): its owner is the
    row's person. One row per owner, one owner per phone."""
    candidates = (
        "{t}.outcome IS NULL AND {t}.member_id IS NULL AND {t}.owner_id IS NOT NULL AND NOT {t}.owner_has_phone"
    )
    _sql(
        f"UPDATE club_stage SET outcome = 'adopt' WHERE row_no IN ("  # noqa: S608 - fixed fragments
        f" SELECT s.row_no FROM club_stage s WHERE {candidates.format(t='s')} AND {_first('owner_id', candidates)})"
    )
    _sql(
        """UPDATE club_stage SET outcome = NULL WHERE outcome = 'adopt' AND EXISTS (
             SELECT 1 FROM club_stage e WHERE e.outcome = 'adopt' AND e.phone_index = club_stage.phone_index
             AND e.row_no < club_stage.row_no)"""
    )
    _sql(
        """UPDATE members SET phone = s.phone_enc, phone_index = s.phone_index, updated_at = :now
           FROM club_stage s WHERE s.outcome = 'adopt' AND members.id = s.owner_id AND members.phone_index IS NULL""",
        now=now,
    )
    _sql("UPDATE club_stage SET outcome = NULL WHERE outcome = 'adopt'")
    _sql(
        "UPDATE club_stage SET member_id = m.id FROM members m"
        " WHERE club_stage.member_id IS NULL AND club_stage.outcome IS NULL AND m.phone_index = club_stage.phone_index"
    )


def _assign_member_numbers() -> None:
    """Member numbers for the rows that may create a member: each row comes with one drawn in
    Python (``stage_row``, in the helper process); the few that collide with a member's or an
    earlier row's are drawn again here until none does."""
    colliding = (
        "SELECT w.row_no FROM (SELECT s.row_no, s.member_no,"
        "   row_number() OVER (PARTITION BY s.member_no ORDER BY s.row_no) AS n"
        "   FROM club_stage s WHERE s.outcome IS NULL AND s.member_id IS NULL) w"
        " WHERE w.member_no IS NULL OR w.n > 1 OR EXISTS (SELECT 1 FROM members m WHERE m.member_no = w.member_no)"
    )
    pending = [r for (r,) in _sql(colliding)]
    while pending:
        taken: set[str] = set()
        for _row_no in pending:
            number = new_member_number()
            while number in taken:  # pragma: no cover - one in ~10^9
                number = new_member_number()
            taken.add(number)
        if db.dialect == "postgresql":
            _sql(
                "UPDATE club_stage SET member_no = d.number"
                " FROM unnest(CAST(:rows AS int[]), CAST(:numbers AS text[])) AS d(row_no, number)"
                " WHERE club_stage.row_no = d.row_no",
                rows=pending,
                numbers=list(taken),
            )
        else:
            db.session.execute(
                sa.text("UPDATE club_stage SET member_no = :number WHERE row_no = :row_no"),
                [{"row_no": r, "number": n} for r, n in zip(pending, taken, strict=True)],
            )
        pending = [r for (r,) in _sql(colliding)]


def create_members(dealer: Dealer, now: dt.datetime) -> None:
    """Step 3: one new member per new phone (the file's first row), with its points account."""
    _assign_member_numbers()
    fresh = "{t}.outcome IS NULL AND {t}.member_id IS NULL"
    _sql(
        f"""INSERT INTO members (member_no, status, name, gender, birthday, birthday_changes, phone, phone_index,
                                city, locale, customer_type, enrollment_channel, enrolling_dealer_id, enrolled_at,
                                lifecycle_stage, created_at, updated_at)
            SELECT member_no, 'pre_enrolled', name_enc, gender, birthday_enc, 0, phone_enc, phone_index, :city,
                   'zh_CN', 'private', 'import', :dealer, coalesce(joined_at, :now), 'new', :now, :now
            FROM club_stage s WHERE {fresh.format(t="s")} AND {_first("phone_index", fresh)}""",  # noqa: S608
        city=dealer.city,
        dealer=dealer.id,
        now=now,
    )
    _sql(
        """UPDATE club_stage SET member_id = m.id,
             outcome = CASE WHEN m.member_no = club_stage.member_no THEN 'created' ELSE 'matched' END
           FROM members m WHERE club_stage.outcome IS NULL AND club_stage.member_id IS NULL
             AND m.phone_index = club_stage.phone_index"""
    )
    _sql(
        """INSERT INTO point_accounts (member_id, reward_available, reward_pending, reward_debt, tier_points,
                                       lifetime_earned, lifetime_spent, lifetime_expired, updated_at)
           SELECT member_id, 0, 0, 0, 0, 0, 0, 0, :now FROM club_stage WHERE outcome = 'created'""",
        now=now,
    )
    _sql("UPDATE club_stage SET outcome = 'matched' WHERE outcome IS NULL AND member_id IS NOT NULL")


def complete(dealer: Dealer, policy_version: str, now: dt.datetime) -> None:
    """Steps 4–6: fill blanks, consents with provenance, cars and ownerships."""
    matched = "{t}.outcome = 'matched'"
    _sql(
        f"""UPDATE members SET name = coalesce(members.name, s.name_enc), gender = coalesce(members.gender, s.gender),
              birthday = coalesce(members.birthday, s.birthday_enc), updated_at = :now
            FROM club_stage s
            WHERE members.id = s.member_id AND s.outcome = 'matched' AND {_first("member_id", matched)}
              AND ((members.name IS NULL AND s.name_enc IS NOT NULL)
                   OR (members.gender IS NULL AND s.gender IS NOT NULL)
                   OR (members.birthday IS NULL AND s.birthday_enc IS NOT NULL))""",  # noqa: S608
        now=now,
    )
    member_rows = "{t}." + MEMBER_ROWS
    # ``granted`` is one of two fixed SQL expressions, never input.
    for purpose, granted in (("privacy_policy", "TRUE"), ("marketing", "s.marketing")):
        _sql(
            f"""INSERT INTO consents (member_id, purpose, granted, policy_version, channel, recorded_at, stated_at)
                SELECT member_id, CAST(:purpose AS text), {granted}, :version, 'dealer_club', :now, stated_at
                FROM club_stage s
                WHERE s.{MEMBER_ROWS} AND {granted} IS NOT NULL AND {_first("member_id", member_rows)}
                  AND NOT EXISTS (SELECT 1 FROM consents c WHERE c.member_id = s.member_id
                                  AND c.purpose = CAST(:purpose AS text))""",  # noqa: S608
            purpose=purpose,
            version=policy_version,
            now=now,
        )
    new_car = member_rows + " AND {t}.vin_index IS NOT NULL AND {t}.vehicle_id IS NULL"
    _sql(
        f"""INSERT INTO vehicles (vin, vin_index, model_code, model_name, plate, plate_index, created_at, updated_at)
            SELECT vin_enc, vin_index, 'unknown', coalesce(model_name, ''), plate_enc, plate_index, :now, :now
            FROM club_stage s WHERE {new_car.format(t="s")} AND {_first("vin_index", new_car)}
            ON CONFLICT (vin_index) DO NOTHING""",  # noqa: S608
        now=now,
    )
    _sql(
        f"""UPDATE club_stage SET vehicle_id = v.id FROM vehicles v
            WHERE club_stage.{MEMBER_ROWS} AND club_stage.vehicle_id IS NULL
              AND v.vin_index = club_stage.vin_index"""  # noqa: S608
    )
    unowned = member_rows + " AND {t}.vehicle_id IS NOT NULL AND {t}.owner_id IS NULL"
    _sql(
        f"""INSERT INTO ownerships (member_id, vehicle_id, role, started_on, credited_dealer_id, created_at)
            SELECT member_id, vehicle_id, 'owner', coalesce(joined_on, :today), :dealer, :now
            FROM club_stage s WHERE {unowned.format(t="s")} AND {_first("vehicle_id", unowned)}
            ON CONFLICT DO NOTHING""",  # noqa: S608
        dealer=dealer.id,
        now=now,
        today=now.date(),
    )


def outcomes() -> tuple[dict[str, int], list[int]]:
    """Rows per outcome, and the conflict rows."""
    counts = {str(k): int(v) for k, v in _sql("SELECT outcome, count(*) FROM club_stage GROUP BY outcome").all()}
    conflicts = [r for (r,) in _sql("SELECT row_no FROM club_stage WHERE outcome = 'vin_other_owner' ORDER BY row_no")]
    return counts, conflicts


def member_ids() -> list[int]:
    """The members this chunk created or matched (each once): the CRM must learn their new state."""
    return [int(m) for (m,) in _sql(f"SELECT DISTINCT member_id FROM club_stage WHERE {MEMBER_ROWS} ORDER BY 1")]  # noqa: S608
