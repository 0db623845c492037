"""A product catalogue on FastAPI with plain ``def`` endpoints and a sync SQLAlchemy 2 engine.

The endpoints are synchronous, so FastAPI runs each in its worker thread pool; the engine is
``postgresql+psycopg://`` (psycopg 3) with a ``QueuePool`` of ``pool_size=5``,
``max_overflow=5``, ``pool_timeout=3``. Sessions are ordinary ORM sessions (``autobegin``):
the first statement opens a transaction that lasts until commit, rollback or close, and a
closed session's connection goes back to the pool through a ``ROLLBACK``.

Routes
    GET /ping               no database
    GET /health             ``SELECT 1`` on a properly closed session -- a health query,
                            not a pool reset: the pool's own reset (``ROLLBACK``) follows it
    GET /products           the list, through a ``yield`` session dependency
    GET /products/{id}      one product; 404 for an id that does not exist

The leaky variant plants its leak in ``GET /products/{id}``: ``session = SessionLocal()``, the
SELECT, then ``raise HTTPException(404)`` for a missing id with ``session.close()`` only on
the success path (no ``finally``). The session keeps its connection checked out and
``idle in transaction`` with the product SELECT as its last statement (and an
``AccessShareLock`` on ``catalog_products``). The abandoned session lives in reference
cycles: only Python's cyclic garbage collector frees it -- and then SQLAlchemy rolls the
connection back into the pool with a "non-checked-in connection" warning -- which an idle
server may not do for a long time. After ten of them
(5 + 5 overflow) every other database route answers 500 after the 3 s pool timeout
(``QueuePool limit of size 5 overflow 5 reached``). The correct variant uses
``with SessionLocal() as session``.

Run (cwd = the repository root, database in ``DATABASE_URL``)::

    python -m tests.targets.sync_fastapi setup
    python -m tests.targets.sync_fastapi --port 8083 --variant leaky
"""

import argparse
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, String, create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

APP_NAME = "tgt-sync-fastapi"


class Base(DeclarativeBase):
    pass


class Product(Base):
    __tablename__ = "catalog_products"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(80))
    price_cents: Mapped[int]


def make_engine(database_url: str) -> Engine:
    url = make_url(database_url).set(drivername="postgresql+psycopg")
    return create_engine(
        url,
        pool_size=5,
        max_overflow=5,
        pool_timeout=3,
        connect_args={"application_name": APP_NAME},
    )


def setup_schema(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        Base.metadata.create_all(engine)
        with Session(engine) as session, session.begin():
            present = set(session.scalars(select(Product.id)))
            session.add_all(
                Product(id=i, title=f"Widget {i}", price_cents=100 * i) for i in range(1, 9) if i not in present
            )
    finally:
        engine.dispose()


# No ``from __future__ import annotations`` here: FastAPI must resolve ``Depends(get_session)``
# in a signature defined inside ``make_app``.


def make_app(variant: str, database_url: str) -> FastAPI:
    engine = make_engine(database_url)
    SessionLocal = sessionmaker(engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            engine.dispose()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    def get_session() -> Iterator[Session]:
        session = SessionLocal()
        try:
            yield session
        finally:
            session.close()

    @app.exception_handler(PoolTimeoutError)
    async def pool_timeout(request: Request, exc: PoolTimeoutError) -> JSONResponse:
        return JSONResponse({"detail": "database busy"}, status_code=500)

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"pong": "ok"}

    @app.get("/health")
    def health() -> dict[str, str]:
        with SessionLocal() as session:
            session.execute(text("SELECT 1"))
        return {"database": "ok"}

    @app.get("/products")
    def list_products(session: Annotated[Session, Depends(get_session)]) -> list[dict[str, object]]:
        rows = session.scalars(select(Product).order_by(Product.id))
        return [{"id": p.id, "title": p.title, "price_cents": p.price_cents} for p in rows]

    if variant == "leaky":

        @app.get("/products/{product_id}")
        def get_product(product_id: int) -> dict[str, object]:
            session = SessionLocal()
            product = session.get(Product, product_id)
            if product is None:
                raise HTTPException(status_code=404, detail="no such product")  # session never closed
            body = {"id": product.id, "title": product.title, "price_cents": product.price_cents}
            session.close()
            return body

    else:

        @app.get("/products/{product_id}")
        def get_product(product_id: int) -> dict[str, object]:
            with SessionLocal() as session:
                product = session.get(Product, product_id)
                if product is None:
                    raise HTTPException(status_code=404, detail="no such product")
                return {"id": product.id, "title": product.title, "price_cents": product.price_cents}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.targets.sync_fastapi")
    parser.add_argument("command", nargs="?", choices=["serve", "setup"], default="serve")
    parser.add_argument("--port", type=int, default=8083)
    parser.add_argument("--variant", choices=["leaky", "correct"], default="correct")
    args = parser.parse_args()
    database_url = os.environ["DATABASE_URL"]
    if args.command == "setup":
        setup_schema(database_url)
        return
    uvicorn.run(
        make_app(args.variant, database_url),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,
    )


if __name__ == "__main__":
    main()
