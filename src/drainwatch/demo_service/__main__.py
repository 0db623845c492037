"""``python -m demo_service --variant leaky --port 8000`` (DSN from DRAINWATCH_DEMO_DSN or --dsn)."""

from __future__ import annotations

import argparse
import os

import uvicorn

from drainwatch.demo_service import DSN_ENV
from drainwatch.demo_service.app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m demo_service", description=__doc__)
    parser.add_argument("--variant", choices=("leaky", "fixed"), default="leaky")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--dsn", default=os.environ.get(DSN_ENV))
    parser.add_argument("--cancel-on-disconnect", action="store_true", default=None)
    args = parser.parse_args(argv)
    if not args.dsn:
        parser.error(f"give --dsn or set {DSN_ENV}")
    serve(args.variant, args.dsn, args.host, args.port, args.cancel_on_disconnect)


def serve(variant: str, dsn: str, host: str, port: int, cancel_on_disconnect: bool | None = None) -> None:
    # A bounded graceful shutdown: requests hung on an exhausted pool never finish.
    uvicorn.run(
        create_app(variant, dsn, cancel_on_disconnect),
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=1,
        access_log=False,
    )


if __name__ == "__main__":
    main()
