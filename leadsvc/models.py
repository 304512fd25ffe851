"""Every model, imported in one place so Alembic and the tests see the whole schema."""

from leadsvc.auth.models import ApiKey, StaffAudit, StaffSignInFailure, StaffUser
from leadsvc.consent.models import (
    ConsentEvent,
    ConsentSeal,
    ConsentText,
    ConsentVerification,
    ErasedSubject,
    ExportAudit,
)
from leadsvc.db import Base
from leadsvc.dealers.models import Dealer, LeadMove, RoutingVersion, Territory, ZipRoute
from leadsvc.deliverability.models import BounceEvent, WebhookDelivery
from leadsvc.followup.models import FollowUp, Holiday
from leadsvc.geo.models import ZipCode
from leadsvc.leads.models import Lead
from leadsvc.outbox.models import OutboxAttempt, OutboxMessage
from leadsvc.signups.refusals import SignupRefusal

__all__ = [
    "ApiKey",
    "Base",
    "BounceEvent",
    "ConsentEvent",
    "ConsentSeal",
    "ConsentText",
    "ConsentVerification",
    "Dealer",
    "ErasedSubject",
    "ExportAudit",
    "FollowUp",
    "Holiday",
    "Lead",
    "LeadMove",
    "OutboxAttempt",
    "OutboxMessage",
    "RoutingVersion",
    "SignupRefusal",
    "StaffAudit",
    "StaffSignInFailure",
    "StaffUser",
    "Territory",
    "WebhookDelivery",
    "ZipCode",
    "ZipRoute",
]
