"""The ZIP directory table: every US ZIP code with its place and centre (when it has one)."""

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from leadsvc.db import Base


class ZipCode(Base):
    """One US ZIP code. Military (APO/FPO) ZIPs are real but have no coordinates."""

    __tablename__ = "zip_codes"

    zip5: Mapped[str] = mapped_column(sa.String(5), primary_key=True)
    city: Mapped[str] = mapped_column(sa.String(100))
    state: Mapped[str] = mapped_column(sa.String(2))
    latitude: Mapped[float | None] = mapped_column(sa.Float)
    longitude: Mapped[float | None] = mapped_column(sa.Float)
