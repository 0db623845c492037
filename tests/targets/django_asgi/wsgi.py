"""The WSGI application, for gunicorn's sync workers: there a thread serves request after request,
so a persistent connection (``CONN_MAX_AGE > 0``) is reused, as Django means it to be."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.targets.django_asgi.settings")
application = get_wsgi_application()
