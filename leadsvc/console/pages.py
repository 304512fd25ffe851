"""Every console page, assembled on the one blueprint, with the helpers templates share."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import current_app
from flask_login import current_user

from leadsvc.console import (  # noqa: F401  (routes on blp)
    views_audit,
    views_auth,
    views_coverage,
    views_dealer_files,
    views_dealers,
    views_leads,
    views_overview,
    views_people,
    views_two_factor,
)
from leadsvc.console.frame import blp

#: The navigation: (endpoint, label, section, roles that see it).
NAVIGATION = (
    ("console.overview", "Overview", "overview", ("admin", "compliance")),
    ("console.dealers", "Dealers", "dealers", ("admin",)),
    ("console.unassigned", "Unassigned pool", "unassigned", ("admin",)),
    ("console.coverage", "Coverage map", "coverage", ("admin",)),
    ("console.people", "People", "people", ("compliance",)),
    ("console.texts", "Consent texts", "texts", ("compliance",)),
    ("console.export", "Export", "export", ("compliance",)),
    ("console.ledger", "Ledger", "ledger", ("compliance",)),
    ("console.audit_log", "Audit logs", "audit", ("admin", "compliance")),
    ("console.leads", "Leads", "leads", ("dealer",)),
    ("console.two_factor", "Two-step sign-in", "security", ("admin", "compliance", "dealer")),
)


def nav_items() -> list[tuple[str, str, str]]:
    """The signed-in role's sections (those this installation has; only the set-up of the
    second factor while REQUIRE_2FA holds the account back)."""
    views = current_app.view_functions
    if not current_user.is_authenticated:
        return []
    held_back = views_two_factor.must_enrol(current_user.role, current_user.second_factor)
    return [
        (endpoint, label, section)
        for endpoint, label, section, allowed in NAVIGATION
        if current_user.role in allowed
        and endpoint in views
        and (endpoint == "console.two_factor" or not held_back)
    ]


@blp.app_template_filter("when")
def when(value: datetime | None) -> str:
    """A timestamp as staff read it (UTC, to the minute)."""
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


@blp.app_template_filter("duration")
def duration(value: timedelta | None) -> str:
    """A span in the largest sensible unit: 45 min, 5.2 h, 3.1 days."""
    if value is None:
        return "none"
    seconds = value.total_seconds()
    if seconds < 3600:
        return f"{max(seconds / 60, 0):.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


blp.add_app_template_global(nav_items, "nav_items")
