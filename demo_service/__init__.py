"""The bundled target: a FastAPI agent service that leaks PostgreSQL connections (or not).

``create_app("leaky", dsn)`` carries the failure modes from the seeds, one route each;
``create_app("fixed", dsn)`` serves the same routes done right. See README.md here.
"""

from demo_service.app import create_app

__all__ = ["create_app"]
