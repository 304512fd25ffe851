"""The application factory. `create_app` reads like a table of contents."""

from __future__ import annotations

from flask import Flask
from flask.sessions import SessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix

from leadsvc import (
    console,
    deliverability,
    edge,
    followup,
    input_bounds,
    jobs,
    outbound,
    request_context,
)
from leadsvc.deliverability import webhooks as bounce_webhooks
from leadsvc.errors import register_error_handlers
from leadsvc.extensions import api, db
from leadsvc.leads.email_address import EmailChecker
from leadsvc.ops import health, metrics
from leadsvc.ops.logs import configure_logging
from leadsvc.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app from `settings` (default: the environment)."""
    settings = settings or Settings.from_env()
    app = Flask(__name__, instance_path=str(settings.instance_path))
    configure(app, settings)
    register_extensions(app, settings)
    register_blueprints(app)
    register_error_handlers(app)
    register_commands(app)
    return app


class NoCookieSessions(SessionInterface):
    """leadsvc keeps nothing in cookies (the form's token is a signed hidden field), so Flask's
    cookie session is never opened: it cost every request a signing-key derivation. Writing to
    `flask.session` fails loudly instead of setting a cookie."""

    def open_session(self, app, request):
        return self.make_null_session(app)

    def save_session(self, app, session, response) -> None:
        return None


def configure(app: Flask, settings: Settings) -> None:
    app.config.update(
        SECRET_KEY=settings.secret_key,
        LEADSVC_SETTINGS=settings,
        MAX_CONTENT_LENGTH=16 * 1024,
        JSON_SORT_KEYS=False,
        API_TITLE="leadsvc",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        METRICS_TOKEN=settings.metrics_token,
    )
    app.session_interface = NoCookieSessions()
    configure_logging(settings.log_level, settings.secret_key)
    if settings.proxy_count:
        app.wsgi_app = ProxyFix(
            app.wsgi_app,
            x_for=settings.proxy_count,
            x_proto=settings.proxy_count,
            x_host=settings.proxy_count,
        )


def register_extensions(app: Flask, settings: Settings) -> None:
    import leadsvc.models  # noqa: F401  (every mapper configured before the first request)

    db.init_app(app, settings.database_url)
    api.init_app(app)
    app.extensions["leadsvc.email_checker"] = EmailChecker(
        check_deliverability=settings.email_check_deliverability,
        dns_timeout=settings.email_dns_timeout,
    )
    request_context.init_app(app)
    outbound.init_app(app)
    jobs.init_app(app)
    input_bounds.init_app(app)
    edge.init_app(app)
    metrics.init_app(app)
    followup.init_app(app)
    deliverability.init_app(app)
    console.init_app(app)
    bounce_webhooks.init_app(app)


def register_blueprints(app: Flask) -> None:
    from leadsvc.auth import register_security_scheme
    from leadsvc.consent.api import blp as consent_blp
    from leadsvc.dealers.api import admin_blp, dealer_blp
    from leadsvc.outbound.views import pages as outbound_pages
    from leadsvc.signups.views import api_blp, pages
    from leadsvc.signups.zip_lookup import blp as zips_blp

    register_security_scheme(api)
    edge.limit_signups(app, api_blp)
    edge.limit_signups(app, pages)
    api.register_blueprint(api_blp)
    api.register_blueprint(zips_blp)
    api.register_blueprint(dealer_blp)
    api.register_blueprint(admin_blp)
    api.register_blueprint(consent_blp)
    api.register_blueprint(bounce_webhooks.blp)
    for blueprint in followup.blueprints():
        api.register_blueprint(blueprint)
    app.register_blueprint(pages)
    app.register_blueprint(outbound_pages)
    app.register_blueprint(health.blp)
    app.register_blueprint(metrics.blp)
    app.register_blueprint(console.blueprint())


def register_commands(app: Flask) -> None:
    from leadsvc.commands import register_commands as add_commands

    add_commands(app)
