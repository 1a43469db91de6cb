"""Every table of the service, in one place: Alembic compares this metadata with the database,
and a test proves that no mapped table is missing from it. A package with tables adds its
``models`` module here."""

from __future__ import annotations

from app.benefits import models as benefits
from app.campaigns import models as campaigns
from app.care import models as care
from app.complaints import models as complaints
from app.core import models as core
from app.core.db import Base
from app.crm import models as crm
from app.dealers import models as dealers
from app.mall import models as mall
from app.members import models as members
from app.operators import models as operators
from app.points import models as points
from app.referrals import models as referrals
from app.reporting import models as reporting
from app.tiers import models as tiers

MODELS = (
    core,
    dealers,
    operators,
    tiers,
    points,
    members,
    mall,
    campaigns,
    care,
    complaints,
    benefits,
    referrals,
    crm,
    reporting,
)
metadata = Base.metadata

__all__ = ["MODELS", "metadata"]
