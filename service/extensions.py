"""Extensions, created unbound and bound in `create_app` with `init_app`."""
from __future__ import annotations

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

from .i18n import lazy_gettext

login_manager = LoginManager()
login_manager.login_view = "members.login"
login_manager.login_message = lazy_gettext("Please log in to continue.")
login_manager.session_protection = "strong"

csrf = CSRFProtect()

# Storage comes from RATELIMIT_STORAGE_URI (memory:// by default, redis://... in production).
limiter = Limiter(key_func=get_remote_address, default_limits=[])
