"""Run the Django target: Django 5.x, sync views, psycopg 3 backend, over ASGI under uvicorn.

Every request's sync view runs through ``sync_to_async(thread_sensitive=True)`` inside the
per-request ``ThreadSensitiveContext`` of Django's ASGI handler, i.e. in a thread of its own,
and Django's connections are local to that thread and request (asgiref ``Local``). With
``CONN_MAX_AGE > 0`` (or ``None``) the connection is kept open at the end of the request for
reuse -- by a thread and a context that are never used again -- so connections pile up, one
per request, ``idle`` with the ORM's SELECT as their last statement. Nothing references them
any more, but each ``DatabaseWrapper`` sits in reference cycles, so only Python's cyclic
garbage collector closes them, at times nobody controls (under sustained traffic the count
swings, e.g. 10 -> 35 -> 20 over 80 requests; an idle server keeps them indefinitely). With
``CONN_MAX_AGE = 0`` Django closes the connection at the end of every request.

The variant is that setting: ``--variant leaky`` uses ``CONN_MAX_AGE=60`` unless the
environment variable ``CONN_MAX_AGE`` says otherwise (``none`` = unlimited); ``--variant
correct`` always uses 0.

``--server gunicorn`` serves it as projects deploy it, ``gunicorn -k uvicorn_worker.UvicornWorker``
with 2 workers (the same leak in each); ``--server wsgi`` under gunicorn's sync workers, where a
thread serves request after request and a persistent connection is reused (no leak).

Routes: ``GET /items/`` (the ORM lists ``dj_notes``), ``GET /items/<id>/`` (one note, 404 when
missing), ``GET /health/`` (no database).

    python -m tests.targets.django_asgi setup        # CREATE TABLE IF NOT EXISTS + seed rows
    python -m tests.targets.django_asgi --port 8084 --variant leaky [--server gunicorn] [--atomic]

The database comes from ``DATABASE_URL`` (``postgresql://user:pw@host:port/db``).
"""

import argparse
import os
import sys

import psycopg

# Nothing from .settings at import time: CONN_MAX_AGE must be in the environment before the
# settings module reads it.


def setup_schema(url: str) -> None:
    with psycopg.connect(url, application_name="tgt-django-asgi-setup") as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS dj_notes (id integer PRIMARY KEY, title varchar(80) NOT NULL, body text NOT NULL)"
        )
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO dj_notes (id, title, body) VALUES (%s, %s, %s) ON CONFLICT (id) DO NOTHING",
                [(i, f"note {i}", "lorem ipsum " * i) for i in range(1, 7)],
            )


def gunicorn(server: str, port: int) -> None:
    """Become gunicorn with 2 workers: the uvicorn worker over ASGI, or sync workers over WSGI."""
    app, worker = {
        "gunicorn": ("tests.targets.django_asgi.asgi:application", "uvicorn_worker.UvicornWorker"),
        "wsgi": ("tests.targets.django_asgi.wsgi:application", "sync"),
    }[server]
    argv = ["gunicorn", "-w", "2", "-k", worker, "-b", f"127.0.0.1:{port}", "--graceful-timeout", "3"]
    os.execvp(sys.executable, [sys.executable, "-m", *argv, "--log-level", "warning", app])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.targets.django_asgi")
    parser.add_argument("command", nargs="?", choices=["serve", "setup"], default="serve")
    parser.add_argument("--port", type=int, default=8084)
    parser.add_argument("--variant", choices=["leaky", "correct"], default="correct")
    parser.add_argument("--server", choices=["uvicorn", "gunicorn", "wsgi"], default="uvicorn")
    parser.add_argument("--atomic", action="store_true", help="ATOMIC_REQUESTS: every view in a transaction")
    parser.add_argument(
        "--gc-off",
        action="store_true",
        help="no cyclic garbage collection: what leaks stays (a large heap's rare gen-2)",
    )
    args = parser.parse_args()
    if args.command == "setup":
        setup_schema(os.environ["DATABASE_URL"])
        return
    if args.variant == "leaky":
        os.environ.setdefault("CONN_MAX_AGE", "60")
    else:
        os.environ["CONN_MAX_AGE"] = "0"
    if args.atomic:
        os.environ["ATOMIC_REQUESTS"] = "1"
    if args.gc_off:
        os.environ["TARGET_GC_OFF"] = "1"  # read by asgi.py in every process, gunicorn's workers too
    if args.server != "uvicorn":
        gunicorn(args.server, args.port)

    import uvicorn

    from .asgi import application

    uvicorn.run(
        application,
        host="127.0.0.1",
        port=args.port,
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,
    )


if __name__ == "__main__":
    main()
