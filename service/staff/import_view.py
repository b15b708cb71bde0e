"""`/staff/admin/import`: admins bring members in from a CSV file (billing/imports.py does it)."""
from __future__ import annotations

from flask import render_template
from flask_login import current_user
from flask_wtf.file import FileField, FileRequired
from wtforms import RadioField

from ..billing.imports import run_import
from ..billing.runtime import get_gateway
from ..db import get_session
from .forms import ConfirmForm
from .routes import _flash_errors, admin_required, bp


class ImportForm(ConfirmForm):
    file = FileField("CSV file", validators=[FileRequired("Choose a CSV file.")])
    mode = RadioField("What to do", choices=["dry_run", "import"], default="dry_run")


@bp.get("/admin/import")
@admin_required
def import_members():
    return render_template("staff/import.html", form=ImportForm(prefix="imp"), report=None)


@bp.post("/admin/import")
@admin_required
def import_members_run():
    form = ImportForm(prefix="imp")
    if not form.validate_on_submit():
        _flash_errors(form)
        return render_template("staff/import.html", form=form, report=None), 400
    upload = form.file.data
    report = run_import(get_session(), get_gateway(), upload.read(), dry_run=form.mode.data != "import",
                        actor=current_user, file_name=upload.filename)
    return render_template("staff/import.html", form=ImportForm(prefix="imp", formdata=None), report=report,
                           file_name=upload.filename)
