"""The store backends the tests run against: SQLite always, PostgreSQL when a server is given.

PostgreSQL tests read the server from ``XP_TEST_POSTGRES_URL`` (e.g.
``postgresql://postgres@127.0.0.1:5432/postgres``, a user who may create databases). The test
session creates one fresh database there (``xp_test_<random>``), gives every test a store of
its own in it (a schema: ``?store=<random>``) and drops the database at the end; no other
database on the server is touched. Without the variable the PostgreSQL tests are skipped with
that reason, except where ``CI`` or ``XP_REQUIRE_POSTGRES=1`` is set: there the session stops
at once (see ``conftest.py``), so CI can never pass by skipping them.

Imported as ``from backends import ...`` (pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pytest_experiments import Store

POSTGRES_ENV = "XP_TEST_POSTGRES_URL"
REQUIRE_ENV = "XP_REQUIRE_POSTGRES"
BACKENDS = ("sqlite", "postgresql")


def postgres_required() -> bool:
    """Whether a missing PostgreSQL server is an error rather than a reason to skip (CI)."""
    return bool(os.environ.get("CI")) or os.environ.get(REQUIRE_ENV) == "1"


def with_database(url: str, database: str) -> str:
    """``url`` naming another database on the same server (its query, if any, kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def with_store(url: str, store: str) -> str:
    """``url`` with the store name ``store`` (``?store=...``) added to its query."""
    parts = urlsplit(url)
    query = f"{parts.query}&store={store}" if parts.query else f"store={store}"
    return urlunsplit(parts._replace(query=query))


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server of ``server_url``, dropped afterwards; yields its URL."""
    import psycopg
    from psycopg import sql

    name = f"xp_test_{secrets.token_hex(6)}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            # FORCE: a connection a failed test left open must not keep the database alive.
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@dataclass
class Backend:
    """One test's store location on one backend, and what the tests need to look inside it."""

    kind: str
    #: What ``Store.open`` takes: a folder for SQLite, a URL for PostgreSQL.
    location: str
    #: A server store's folder of run folders (None for SQLite: its run folders are inside it).
    artifacts: Path | None = None
    #: PostgreSQL: the database URL without the store name, and the store's schema.
    database_url: str = ""
    schema: str = ""

    def open(self, **options: Any) -> Store:
        """``Store.open`` of this location with ``options`` (``create``, ``readonly``, ``lease``)."""
        if self.artifacts is not None:
            options.setdefault("artifacts", self.artifacts)
        return Store.open(self.location, **options)

    def exists(self) -> bool:
        """Whether anything of the store exists (its folder, or its schema on the server)."""
        if self.kind == "sqlite":
            return os.path.lexists(self.location)
        return bool(self._query("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (self.schema,))[0][0])

    def set_schema_version(self, version: int) -> None:
        """Write ``version`` as the store's schema version, as a newer pytest-experiments would."""
        if self.kind == "sqlite":
            with contextlib.closing(sqlite3.connect(Path(self.location) / "experiments.sqlite")) as db:
                db.execute(f"PRAGMA user_version={int(version)}")
            return
        from psycopg import sql

        self._execute(
            sql.SQL("UPDATE {} SET version = %s").format(sql.Identifier(self.schema, "store_version")), (version,)
        )

    def _query(self, statement: Any, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as connection:
            return connection.execute(statement, args).fetchall()

    def _execute(self, statement: Any, args: tuple[Any, ...] = ()) -> None:
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as connection:
            connection.execute(statement, args)


def make_backend(kind: str, tmp_path: Path, database_url: str | None) -> Backend:
    """A new, not yet created store on ``kind`` for one test (``database_url``: PostgreSQL's test database)."""
    if kind == "sqlite":
        return Backend(kind, str(tmp_path / "store"))
    assert database_url is not None
    schema = f"t_{secrets.token_hex(5)}"
    return Backend(kind, with_store(database_url, schema), tmp_path / "artifacts", database_url, schema)
