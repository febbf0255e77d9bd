"""Shared fixtures: a migrated Store on each backend (SQLite, PostgreSQL) and an authenticated API client.

The `store` fixture is parametrized, so every test that uses it (directly or through `api`) runs once on
SQLite and once on PostgreSQL. PostgreSQL runs need DOCKYARD_TEST_PG_URL (scripts/test.sh sets it) and get
a database of their own that is dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from dockyard.store.repository import Store

PG_URL_ENV = "DOCKYARD_TEST_PG_URL"
ADMIN_USER = "admin"
ADMIN_PASSWORD = "correct-horse-battery-staple"


def _database_url(server_url: str, database: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def _pg_server_url() -> str:
    url = os.environ.get(PG_URL_ENV)
    if not url:
        pytest.skip(f"{PG_URL_ENV} is not set: no PostgreSQL to test against (scripts/test.sh starts one)")
    return url


@pytest.fixture(scope="session")
def pg_admin() -> Iterator:
    """One autocommit connection to the test server, for creating and dropping databases."""
    import psycopg

    with psycopg.connect(_pg_server_url(), autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def pg_template(pg_admin: Any) -> Iterator[str]:
    """A migrated database that each test's database is copied from (saves migrating per test)."""
    name = f"dy_template_{secrets.token_hex(6)}"
    pg_admin.execute(f'CREATE DATABASE "{name}"')
    try:
        s = Store(_database_url(_pg_server_url(), name))
        try:
            s.migrate()
        finally:
            s.close()  # CREATE DATABASE ... TEMPLATE needs the template to have no connections
        yield name
    finally:
        pg_admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_database(pg_admin: Any, pg_template: str) -> Iterator[str]:
    """A fresh PostgreSQL database of its own for one test; yields its postgresql:// URL."""
    name = f"dy_test_{secrets.token_hex(6)}"
    pg_admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    try:
        yield _database_url(_pg_server_url(), name)
    finally:
        pg_admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A migrated, empty Store on the backend named by the parameter."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'dockyard.db'}"
    else:
        url = request.getfixturevalue("pg_database")
    s = Store(url)
    try:
        s.migrate()
        yield s
    finally:
        s.close()


class FakeLogs:
    """Log provider for API tests: these tests never touch an engine."""

    def app_logs(self, tenant: str, project: str, app: str, *, follow: bool, tail: int | None,
                 since: float | None, timestamps: bool, stop: threading.Event) -> Iterator:
        return iter(())


class FakePlatform:
    def engine_status(self) -> dict:
        return {"status": "ok", "engine": "fake"}

    def leader(self) -> bool:
        return True

    def nodes(self) -> list:
        from dockyard.engines.base import NodeInfo

        return [NodeInfo("node-1", "ready", "99.0", 4, 8 * 2**30, ())]


@pytest.fixture
def admin_credentials() -> dict[str, str]:
    """The user name and password of the admin the `api` fixture logs in as."""
    return {"username": ADMIN_USER, "password": ADMIN_PASSWORD}


@pytest.fixture
def api(store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """A TestClient over the real API and store, logged in as an admin (Authorization header set)."""
    from argon2 import PasswordHasher
    from starlette.exceptions import StarletteDeprecationWarning

    from dockyard.api.app import create_app
    from dockyard.store import users

    with warnings.catch_warnings():
        # starlette's notice that its TestClient will move to httpx2 is not about this project
        warnings.simplefilter("ignore", StarletteDeprecationWarning)
        from fastapi.testclient import TestClient

    # real argon2id with its cheapest parameters: the defaults cost ~0.3 s per test and cover nothing more
    monkeypatch.setattr(users, "_hasher", PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
    users.create_user(store, ADMIN_USER, ADMIN_PASSWORD, is_admin=True)
    app = create_app(store, logs=FakeLogs(), platform=FakePlatform())
    with TestClient(app) as client:
        r = client.post("/api/v1/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
        assert r.status_code == 200, r.text
        client.headers["Authorization"] = f"Bearer {r.json()['token']}"
        yield client


@pytest.fixture(scope="session", autouse=True)
def _remove_test_registry_images() -> Iterator[None]:
    """Pushes, pulls and builds against the registries of this session's test servers leave image
    references on the shared engine; without this every run adds a few more. Only this session's
    registries: another session running beside it may still need its own."""
    yield
    try:
        from dockyard_harness import REGISTRIES  # tests/integration, on the path once its tests ran
        from peers import remove_registry_refs
    except ImportError:
        return  # no engine tests ran: no test server, no registry
    if REGISTRIES:
        remove_registry_refs(dict(os.environ), *REGISTRIES)
