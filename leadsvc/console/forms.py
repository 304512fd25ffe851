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


class ReassignForm(FlaskForm):
    dealer_code = StringField(
        "Dealer code (empty: back to the unassigned pool)", validators=[Optional(), Length(max=16)]
    )
