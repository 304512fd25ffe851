"""The staff audit log and the export audit, for admins and compliance."""

from __future__ import annotations

import sqlalchemy as sa
from flask import render_template, request

from leadsvc.auth.audit import audit_page
from leadsvc.consent.models import ExportAudit
from leadsvc.console.access import roles
from leadsvc.console.frame import blp
from leadsvc.extensions import db

PAGE_SIZE = 50


@blp.route("/audit")
@roles("admin", "compliance")
def audit_log():
    """Staff actions newest first, and the latest consent exports."""
    before = request.args.get("before", "")
    entries, older = audit_page(
        db.session, before=int(before) if before.isdigit() else None, limit=PAGE_SIZE
    )
    exports = db.session.scalars(
        sa.select(ExportAudit).order_by(ExportAudit.id.desc()).limit(20)
    ).all()
    return render_template(
        "console/audit.html", section="audit", entries=entries, older=older, exports=exports
    )
