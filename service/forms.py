"""Forms every blueprint shares."""
from __future__ import annotations

from flask_wtf import FlaskForm


class ActionForm(FlaskForm):
    """A form with only the CSRF token, for POST buttons."""
