"""Dealer webhook URLs that point at this machine, a private network or cloud metadata (SSRF)
are refused when they are set: the dealer validation, the admin API and the CSV import."""

import ipaddress

import pytest
import sqlalchemy as sa

from leadsvc.dealers.dealer_rows import validate_dealer
from leadsvc.dealers.models import Dealer
from leadsvc.leads.email_address import EmailChecker
from leadsvc.webhook_targets import parse_networks, refusal
from tests.dealers.test_admin_api import BOSTON, DEALERS
from tests.factories import dealer_csv, dealer_line

SECRET = "s" * 24
REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"),
    ("169.254.169.254", "cloud metadata"),
    ("169.254.1.2", "link-local"),
    ("fe80::1", "link-local"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("fd00:ec2::254", "cloud metadata"),
    ("100.100.100.200", "cloud metadata"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
]


@pytest.mark.parametrize(("text", "kind"), REFUSED, ids=[text for text, _ in REFUSED])
def test_loopback_private_link_local_metadata_and_multicast_addresses_are_refused(text, kind):
    reason = refusal(ipaddress.ip_address(text))
    assert reason is not None and kind in reason


def test_public_addresses_pass_and_an_allowed_network_lets_a_private_one_through():
    assert refusal(ipaddress.ip_address("93.184.216.34")) is None
    assert refusal(ipaddress.ip_address("2606:4700::1111")) is None
    allowed = parse_networks("10.0.0.0/8, 127.0.0.1/32")
    assert refusal(ipaddress.ip_address("10.20.30.40"), allowed) is None
    assert refusal(ipaddress.ip_address("127.0.0.1"), allowed) is None
    assert "loopback" in refusal(ipaddress.ip_address("127.0.0.2"), allowed)
    assert "private" in refusal(ipaddress.ip_address("192.168.0.1"), allowed)


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "https://[::1]/hook",
        "http://10.0.0.7/crm",
        "http://metadata.google.internal/computeMetadata/v1/",
    ],
)
def test_the_dealer_validation_refuses_internal_webhook_urls(url):
    row = {
        "code": "BOS1",
        "zip": "02215",
        **BOSTON,
        "webhook_url": url,
        "webhook_secret": SECRET,
    }
    centres = {"02215": (42.35, -71.1)}
    with pytest.raises(ValueError, match="is not allowed: .*WEBHOOK_ALLOWED_NETWORKS"):
        validate_dealer(row, centres, EmailChecker())
    allowed = parse_networks("10.0.0.0/8,127.0.0.0/8,::1/128")
    if "10.0.0.7" in url or "127.0.0.1" in url or "[::1]" in url:
        values = validate_dealer(row, centres, EmailChecker(), webhook_networks=allowed)
        assert values["webhook_url"] == url


def test_the_admin_api_refuses_a_metadata_webhook_and_changes_nothing(client, session, keys):
    body = BOSTON | {"webhook_url": "http://169.254.169.254/latest", "webhook_secret": SECRET}
    reply = client.put(f"{DEALERS}/BOS1", headers=keys["admin"], json=body)
    assert reply.status_code == 422, reply.get_json()
    reason = reply.get_json()["errors"]["1"]
    assert "169.254.169.254 is a cloud metadata address" in reason
    assert session.scalar(sa.select(Dealer).where(Dealer.code == "BOS1")) is None


def test_the_csv_import_refuses_a_loopback_webhook_unless_the_setting_allows_it(make_app, tmp_path):
    line = dealer_line(
        "SC012", "29401", state="SC", webhook_url="http://127.0.0.1:9/h", webhook_secret=SECRET
    )
    path = tmp_path / "dealers.csv"
    path.write_text(dealer_csv(line))
    strict = make_app(webhook_allowed_networks=())
    result = strict.test_cli_runner().invoke(args=["dealers", "import", str(path)])
    assert result.exit_code == 1
    assert "127.0.0.1 is a loopback address" in result.output
    allowing = make_app(webhook_allowed_networks=parse_networks("127.0.0.1/32"))
    result = allowing.test_cli_runner().invoke(args=["dealers", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert "line 2: SC012 created" in result.output
