"""One error shape for the API (`{"code", "status", "message", "errors"}`), pages for the rest.

No reply ever carries a trace: an unexpected failure is logged (without personal data; the
engine hides statement parameters) and answered with the form's own failure message.
"""

from __future__ import annotations

import logging
import traceback
from http import HTTPStatus

from flask import Flask, current_app, jsonify, render_template, request
from flask_smorest import Api
from marshmallow import Schema, fields
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError, ServiceUnavailable

log = logging.getLogger(__name__)

#: The form's own words for anything that is not the person's fault.
FAILURE_MESSAGE = "Sorry about this. Something went wrong, please come back and try again later."
FIELD_ERRORS_MESSAGE = "Please check the fields marked below."
#: webargs' words for a body it cannot read, in ours.
BODY_MESSAGES = {"Invalid JSON body.": "Please send the form as valid JSON."}


def first_messages(errors):
    """marshmallow gives lists per field; a form shows one message per field."""
    if isinstance(errors, list):
        return errors[0] if errors and isinstance(errors[0], str) else errors
    if isinstance(errors, dict):
        return {str(key): first_messages(value) for key, value in errors.items()}
    return errors


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def error_reply(status: int, message: str, errors: dict | None = None, headers=None):
    """The reply for an error: JSON under /api, a page elsewhere."""
    name = _status_name(status)
    if _wants_json():
        body = {"code": status, "status": name, "message": message}
        if errors:
            body["errors"] = errors
        response = jsonify(body)
    else:
        response = render_template("error.html", status=status, message=message)
    return response, status, headers or {}


def _status_name(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class ErrorSchema(Schema):
    """The one error shape of the API."""

    code = fields.Integer(metadata={"example": 422})
    status = fields.String(metadata={"example": "Unprocessable Entity"})
    message = fields.String()
    errors = fields.Dict(
        keys=fields.String(),
        metadata={"description": "Field errors, keyed by field, in the form's own words"},
    )


def nullable_reference(converter, field, ret: dict) -> dict:
    """An apispec attribute function: "this object or null" for a nullable nested schema.

    For OpenAPI 3.0 apispec writes `anyOf: [{type: object, nullable: true}, {$ref}]`, whose first
    branch lets any object through; the first branch is made null and nothing else."""
    branches = ret.get("anyOf")
    if not field.allow_none or not isinstance(branches, list):
        return {}
    return {
        "anyOf": [
            {"nullable": True, "enum": [None]}
            if branch == {"type": "object", "nullable": True}
            else branch
            for branch in branches
        ]
    }


class LeadsvcApi(Api):
    """flask-smorest's Api with errors keyed by field (not by location), pages for non-API, and
    nullable nested schemas documented as that object or null."""

    ERROR_SCHEMA = ErrorSchema

    def init_app(self, app, *, spec_kwargs=None):
        super().init_app(app, spec_kwargs=spec_kwargs)
        self.ma_plugin.converter.add_attribute_function(nullable_reference)

    def handle_http_exception(self, error: HTTPException):
        page = _section_page(error)
        if page is not None:
            return page
        if isinstance(error, InternalServerError):
            return _unexpected(getattr(error, "original_exception", None) or error)
        data = getattr(error, "data", None) or {}
        message = data.get("message")
        errors = data.get("errors") or data.get("messages")
        if isinstance(errors, dict) and set(errors) <= {"json", "form", "query", "path"}:
            merged = {}
            for location_errors in errors.values():
                if isinstance(location_errors, dict):
                    merged.update(location_errors)
                elif message is None:  # a whole-body error, such as unparseable JSON
                    message = BODY_MESSAGES.get(first_messages(location_errors), FAILURE_MESSAGE)
            errors = merged
        errors = first_messages(errors) if errors else None
        if message is None:
            message = FIELD_ERRORS_MESSAGE if error.code == 422 else error.description
        headers = {
            name: value for name, value in error.get_headers() if name.lower() != "content-type"
        }  # werkzeug's own, such as Allow on a 405 (RFC 9110 requires it)
        headers.update(data.get("headers") or {})
        return error_reply(error.code or 500, message, errors, headers)


#: app.extensions key: (path prefix, page renderer) of the parts of the site with their own pages.
SECTION_PAGES = "leadsvc.section_pages"
#: The errors a section answers itself even where no route of it matched.
SECTION_ERRORS = (404, 405)


def register_section_pages(app: Flask, prefix: str, render) -> None:
    """Let the part of the site under `prefix` (the console) answer a 404 or 405 with its own
    page, also for a URL none of its routes matched. `render(error)` returns (body, status)."""
    app.extensions.setdefault(SECTION_PAGES, []).append((prefix, render))


def _section_page(error: HTTPException):
    if error.code not in SECTION_ERRORS:
        return None
    for prefix, render in current_app.extensions.get(SECTION_PAGES, ()):
        if request.path == prefix.rstrip("/") or request.path.startswith(prefix):
            body, status = render(error)
            headers = [(k, v) for k, v in error.get_headers() if k.lower() != "content-type"]
            return body, status, headers
    return None


def _database_error(error: DBAPIError):
    if isinstance(error, OperationalError | InterfaceError) or error.connection_invalidated:
        log.warning("database unavailable: %s", type(error.orig).__name__)
        return error_reply(ServiceUnavailable.code, FAILURE_MESSAGE, headers={"Retry-After": "5"})
    return _unexpected(error)


def _unexpected(error: BaseException):
    # The stack, not the exception's message: messages can carry what a person typed.
    stack = "".join(traceback.format_tb(error.__traceback__))
    log.error("unexpected failure: %s\n%s", type(error).__name__, stack)
    return error_reply(InternalServerError.code, FAILURE_MESSAGE)


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(DBAPIError, _database_error)
    app.register_error_handler(Exception, _unexpected)
