"""Settings for the Django target. The database comes from ``DATABASE_URL``, parsed here.

``CONN_MAX_AGE`` comes from the environment variable of the same name: a number of seconds,
``none`` for unlimited persistent connections, default 0 (close after every request).
``ATOMIC_REQUESTS=1`` wraps every view in a transaction (a request's last statement is then
``COMMIT``, or ``ROLLBACK`` when the view raised).
"""

import os
from urllib.parse import parse_qsl, unquote, urlsplit

APP_NAME = "tgt-django-asgi"


def conn_max_age(raw: str | None) -> int | None:
    if raw is None or raw.strip() == "":
        return 0
    if raw.strip().lower() == "none":
        return None
    return int(raw)


def database_from_url(url: str) -> dict[str, object]:
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"DATABASE_URL must be a postgresql:// URL, not {parts.scheme!r}")
    options = dict(parse_qsl(parts.query))
    options["application_name"] = APP_NAME
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "CONN_MAX_AGE": conn_max_age(os.environ.get("CONN_MAX_AGE")),
        "ATOMIC_REQUESTS": os.environ.get("ATOMIC_REQUESTS", "") == "1",
        "OPTIONS": options,
    }


SECRET_KEY = "drainwatch-test-target-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["tests.targets.django_asgi"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "tests.targets.django_asgi.urls"
DATABASES = {"default": database_from_url(os.environ["DATABASE_URL"])}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
    "loggers": {"django.request": {"level": "ERROR"}},  # no warning line for every 404
}
