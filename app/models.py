"""Every table of the service, in one place: Alembic compares this metadata with the database,
and a test proves that no mapped table is missing from it. A package with tables adds its
``models`` module here."""

from __future__ import annotations

from app.campaigns import models as campaigns
from app.care import models as care
from app.core import models as core
from app.core.db import Base
from app.crm import models as crm
from app.dealers import models as dealers
from app.members import models as members
from app.operators import models as operators
from app.points import models as points
from app.tiers import models as tiers

MODELS = (core, dealers, operators, tiers, points, members, campaigns, care, crm)
metadata = Base.metadata

__all__ = ["MODELS", "metadata"]
