"""The bundled target: a FastAPI agent service that leaks PostgreSQL connections (or not).

``drainwatch.demo_service.app.create_app("leaky", dsn)`` carries the failure modes from the
seeds, one route each; ``create_app("fixed", dsn)`` serves the same routes done right. See
README.md here. This module holds only the facts drainwatch needs to start and watch it,
so reading them does not import FastAPI.
"""

POOL_SIZE, MAX_OVERFLOW = 20, 10  # the pool of the seed's error message
RAW_POOL_MAX = 10
POOL_LIMIT = POOL_SIZE + MAX_OVERFLOW + RAW_POOL_MAX
DSN_ENV = "DRAINWATCH_DEMO_DSN"
CANCEL_ENV = "DRAINWATCH_DEMO_CANCEL_ON_DISCONNECT"


def app_name(variant: str) -> str:
    """The application_name prefix of the demo's backends (``:sa`` or ``:raw`` follows)."""
    return f"drainwatch-demo-{variant}"
