"""At send time a dealer webhook's host is resolved and checked again, and the call goes to the
checked address (SSRF: a DNS answer changed since the URL was set cannot slip through)."""

import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from leadsvc.extensions import db
from leadsvc.outbound.dealer_notice import post_webhook
from leadsvc.outbox.kinds import DeliveryError
from tests.factories import TEST_WEBHOOK_NETWORKS, valid_signup
from tests.jobs.support import FAST, add_dealer, attempts, drain, outbox

SECRET = "s" * 24


def test_a_webhook_that_points_inside_at_send_time_fails_for_good_unsent(
    make_app, smtp, webhook_receiver
):
    """The URL passed when it was set (an operator allowed it then, or its name pointed
    elsewhere); the send checks again and refuses it, without calling it or retrying."""
    app = make_app(smtp_url=smtp.url, **FAST, webhook_allowed_networks=())
    with db.sessionmaker(app)() as session:
        add_dealer(session, webhook_url=webhook_receiver.url)  # allowed for 127.0.0.1
        assert app.test_client().post("/api/v1/signups", json=valid_signup()).status_code == 202
        drain(app)
        [row] = [row for row in outbox(session) if row.kind == "dealer_webhook"]
        assert row.status == "failed"
        assert row.last_error == (
            "DeliveryError: webhook refused: 127.0.0.1 is a loopback address "
            "(not in WEBHOOK_ALLOWED_NETWORKS)"
        )
        assert attempts(session, row.id) == [(1, "failed")]
    assert webhook_receiver.requests == []


def test_the_send_connects_to_the_checked_address_and_keeps_the_host_name(webhook_receiver):
    port = webhook_receiver.url.split(":")[2].split("/")[0]
    answers = iter([["127.0.0.1"]])

    def resolver(host, _port):  # a name that now points at the (allowed) receiver
        assert host == "hooks.dealer.test"
        return next(answers)

    url = f"http://hooks.dealer.test:{port}/hook?x=1"
    status = post_webhook(
        url,
        SECRET,
        b"{}",
        delivery="outbox-1",
        timeout=2,
        allowed_networks=TEST_WEBHOOK_NETWORKS,
        resolve=resolver,
    )
    assert status == 200
    [request] = webhook_receiver.wait_for(1)
    assert request["path"] == "/hook?x=1"
    assert request["headers"]["Host"] == f"hooks.dealer.test:{port}"


def test_a_name_that_resolves_to_metadata_at_send_time_is_refused_permanently(webhook_receiver):
    with pytest.raises(DeliveryError) as refused:
        post_webhook(
            "https://crm.dealer.test/hook",
            SECRET,
            b"{}",
            delivery="outbox-1",
            timeout=2,
            allowed_networks=TEST_WEBHOOK_NETWORKS,
            resolve=lambda host, port: ["93.184.216.34", "169.254.169.254"],
        )
    assert refused.value.permanent
    assert "crm.dealer.test resolves to 169.254.169.254, a cloud metadata address" in str(
        refused.value
    )
    assert webhook_receiver.requests == []


@pytest.fixture
def tls_receiver(tmp_path, monkeypatch):
    """An HTTPS receiver on 127.0.0.1 with a certificate for hooks.dealer.test only, trusted
    through SSL_CERT_FILE (OpenSSL's documented override of the default trust store); records
    the TLS server name (SNI) and the Host header of each request."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=hooks.dealer.test"]
        + ["-addext", "subjectAltName=DNS:hooks.dealer.test"],
        check=True,
        capture_output=True,
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    seen: dict[str, list] = {"sni": [], "host": []}
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: seen["sni"].append(name)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            seen["host"].append(self.headers["Host"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    seen["port"] = server.server_port
    yield seen
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_https_goes_to_the_checked_address_with_the_url_host_in_sni_and_host(tls_receiver):
    port = tls_receiver["port"]
    status = post_webhook(
        f"https://hooks.dealer.test:{port}/hook",
        SECRET,
        b"{}",
        delivery="outbox-1",
        timeout=5,
        allowed_networks=TEST_WEBHOOK_NETWORKS,
        resolve=lambda host, _port: ["127.0.0.1"],
    )
    assert status == 204
    assert tls_receiver["sni"] == ["hooks.dealer.test"]  # the certificate's name was checked too
    assert tls_receiver["host"] == [f"hooks.dealer.test:{port}"]
