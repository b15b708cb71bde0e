from __future__ import annotations

from functools import wraps

from flask import Blueprint, abort, render_template
from flask_login import current_user

bp = Blueprint("staff", __name__, url_prefix="/staff")


def staff_required(view):
    """Strangers are sent to log in; members get 403."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        from ..extensions import login_manager

        if not current_user.is_authenticated:
            return login_manager.unauthorized()
        if not current_user.is_staff:
            abort(403)
        return view(*args, **kwargs)

    return wrapper


@bp.get("")
@staff_required
def index():
    return render_template("staff/index.html")
