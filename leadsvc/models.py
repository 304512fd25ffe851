"""Every model, imported in one place so Alembic and the tests see the whole schema."""

from leadsvc.consent.models import ConsentEvent, ConsentText
from leadsvc.db import Base
from leadsvc.geo.models import ZipCode
from leadsvc.signups.models import Lead

__all__ = ["Base", "ConsentEvent", "ConsentText", "Lead", "ZipCode"]
