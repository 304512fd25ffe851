"""ADF 1.0 XML (the automotive lead format dealer CRMs ingest), built with ElementTree.

The document starts `<?xml version="1.0"?>` then `<?adf version="1.0"?>` and validates against the
ADF 1.0 DTD: one `<prospect>` per lead, with the lead id, request date, a MINI vehicle block for the
person's interest, the customer's name, email and ZIP, the dealer as vendor, and the brand's
newsletter as provider. Leads whose person withdrew or was erased carry no personal data and are
left out (ADF has no way to say "withdrawn").
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from leadsvc.dealers.leads import WITHHELD_STATES

HEADER = '<?xml version="1.0"?>\n<?adf version="1.0"?>\n'
PROVIDER_NAME = "MINI USA Stay In the Loop newsletter"
PROVIDER_SERVICE = "Newsletter signup"
#: Characters XML 1.0 cannot carry at all (C0 controls but tab and line breaks, surrogates, FFFE/F):
#: ElementTree writes them as they are, which would make the whole page unparseable.
_NOT_XML = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

#: The ADF 1.0 document type the documents validate against (shipped with the package).
ADF_DTD = Path(__file__).with_name("schema") / "adf-1.0.dtd"


def _text(parent: ET.Element, tag: str, text: str | None = None, **attributes) -> ET.Element:
    element = ET.SubElement(parent, tag, {k: str(v) for k, v in attributes.items()})
    if text is not None:
        element.text = _NOT_XML.sub("", str(text))
    return element


def _prospect(adf: ET.Element, record: dict[str, Any], dealer, provider_url: str | None) -> None:
    prospect = _text(adf, "prospect", status="new")
    _text(prospect, "id", record["id"], sequence="1", source="leadsvc")
    created = record["created_at"]
    _text(prospect, "requestdate", created.isoformat(timespec="seconds"))
    interests = record.get("interests") or []
    for model in interests[:5] or ["Any"]:
        vehicle = _text(prospect, "vehicle", interest="buy", status="new")
        _text(vehicle, "year", created.year)
        _text(vehicle, "make", "MINI")
        _text(vehicle, "model", model)
    customer = _text(prospect, "customer")
    contact = _text(customer, "contact", primarycontact="1")
    _text(contact, "name", record["first_name"], part="first", type="individual")
    _text(contact, "name", record["last_name"], part="last", type="individual")
    bounced = record.get("email_status") == "bounced"
    _text(contact, "email", record["email"], preferredcontact="0" if bounced else "1")
    address = _text(contact, "address", type="home")
    _text(address, "street", "", line="1")  # the form asks for no street; ADF needs the element
    zip_code = record["zip"] + (f"-{record['zip4']}" if record.get("zip4") else "")
    _text(address, "postalcode", zip_code)
    _text(address, "country", "US")
    _text(
        customer,
        "comments",
        "Signed up for the MINI USA newsletter; consented to contact "
        "by MINI USA and the MINI dealer."
        + (" Email status: bounced (mail to this address bounced)." if bounced else ""),
    )
    vendor = _text(prospect, "vendor")
    _text(vendor, "id", dealer.code, source="leadsvc")
    _text(vendor, "vendorname", dealer.name)
    vendor_contact = _text(vendor, "contact")
    _text(vendor_contact, "name", dealer.name, part="full", type="business")
    _text(vendor_contact, "email", dealer.lead_email)
    _text(vendor_contact, "phone", dealer.phone, type="voice")
    provider = _text(prospect, "provider")
    _text(provider, "name", PROVIDER_NAME, part="full", type="business")
    _text(provider, "service", PROVIDER_SERVICE)
    if provider_url:
        _text(provider, "url", provider_url)


def adf_document(
    records: Iterable[dict[str, Any]], dealer, provider_url: str | None = None
) -> str | None:
    """One `<adf>` document for the leads (dealer-facing records), or None if none can be sent."""
    adf = ET.Element("adf")
    for record in records:
        shared = record.get("consent") not in WITHHELD_STATES and record.get("dealer_contact", True)
        if shared:
            _prospect(adf, record, dealer, provider_url)
    if not len(adf):
        return None
    ET.indent(adf)
    return HEADER + ET.tostring(adf, encoding="unicode") + "\n"
