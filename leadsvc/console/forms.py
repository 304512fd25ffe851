"""The console's forms (Flask-WTF: each carries its CSRF token). Field messages use plain words."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    DateField,
    EmailField,
    PasswordField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, Email, Length, Optional, ValidationError

REQUIRED = "This is a required field."


class SignInForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(REQUIRED), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(REQUIRED), Length(max=200)])


class CodeForm(FlaskForm):
    code = StringField(
        "Six-digit code from your authenticator app",
        validators=[DataRequired(REQUIRED), Length(max=10)],
        render_kw={"autocomplete": "one-time-code", "inputmode": "numeric"},
    )


class EmptyForm(FlaskForm):
    """A button that changes something: only the CSRF token."""


class LookupForm(FlaskForm):
    class Meta:
        csrf = False  # a lookup changes nothing (and is a GET)

    email = EmailField(
        "Email address",
        validators=[DataRequired(REQUIRED), Email("Please enter a valid email address.")],
    )


class ErasureForm(FlaskForm):
    email = EmailField("Email address", validators=[DataRequired(REQUIRED)])
    confirm_email = EmailField(
        "Type the address again to confirm", validators=[DataRequired(REQUIRED)]
    )

    def validate_confirm_email(self, field):
        if field.data.strip().lower() != (self.email.data or "").strip().lower():
            raise ValidationError("The two addresses are not the same.")


class ConsentTextForm(FlaskForm):
    text = TextAreaField(
        "New consent text",
        validators=[
            DataRequired(REQUIRED),
            Length(max=10_000, message="At most 10,000 characters."),
        ],
    )
    publish = BooleanField("I have read the preview; publish this text now")


class ExportForm(FlaskForm):
    start = DateField("From (inclusive)", validators=[DataRequired("Please enter a date.")])
    end = DateField("To (inclusive)", validators=[DataRequired("Please enter a date.")])
    format = RadioField(
        "Format",
        choices=[("csv", "CSV"), ("jsonl", "JSON lines")],
        default="csv",
        validators=[DataRequired(REQUIRED)],
    )

    def validate_end(self, field):
        if self.start.data and field.data and field.data < self.start.data:
            raise ValidationError("The end date is before the start date.")


class UploadForm(FlaskForm):
    file = FileField("CSV file", validators=[FileRequired("Please choose a CSV file.")])
    partial = BooleanField("Apply the valid rows even if some are refused")


def _text(label: str, limit: int, *, required: bool = False):
    """A dealer field: only a length cap here, the CSV import's checks do the rest."""
    validators = [DataRequired(REQUIRED)] if required else [Optional()]
    return StringField(
        label, validators=[*validators, Length(max=limit, message=f"At most {limit} characters.")]
    )


class DealerForm(FlaskForm):
    """A dealer's columns of the CSV import, checked by the import itself (same words)."""

    code = _text("Code", 16)
    name = _text("Name", 120)
    street = _text("Street", 200)
    city = _text("City", 100)
    state = _text("State", 2)
    zip = _text("ZIP code", 10)
    phone = _text("Phone", 32)
    lead_email = _text("Lead inbox (email)", 254)
    webhook_url = _text("Webhook URL", 2048)
    webhook_secret = PasswordField(
        "Webhook secret",
        validators=[Optional(), Length(max=200, message="At most 200 characters.")],
    )
    latitude = _text("Latitude", 20)
    longitude = _text("Longitude", 20)
    response_hours = _text("Response target (business hours)", 20)
    opening_hours = _text("Opening hours", 200)
    time_zone = _text("Time zone", 64)

    def row(self) -> dict[str, str]:
        """The form as a row of the dealer CSV."""
        return {
            field.name: (field.data or "").strip() for field in self if field.name != "csrf_token"
        }


class DealerSearchForm(FlaskForm):
    class Meta:
        csrf = False  # a search changes nothing (and is a GET)

    q = StringField("Search by code, name, city or ZIP", validators=[Optional(), Length(max=100)])


class LeadDealerForm(FlaskForm):
    #: Choices (SelectChoice) set by the view: the active dealers.
    dealer_code = SelectField("Give to dealer", validate_choice=True)
