"""The ASGI application (Django has no lifespan support: run uvicorn with ``lifespan="off"``)."""

import gc
import os

from django.core.asgi import get_asgi_application

if os.environ.get("TARGET_GC_OFF") == "1":
    gc.disable()

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.targets.django_asgi.settings")
application = get_asgi_application()
