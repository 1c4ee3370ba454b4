"""Shared fixtures: both index databases (PostgreSQL and SQLite), services, an ASGI client."""

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import text

from app.config import AuthSettings, Settings
from app.index import migrate
from app.index.db import Database
from app.main import create_app
from app.services.container import Services, open_services
from tests import pg

# log_hygiene: no patient name or token in the logs of the whole run (issue 23, point 10)
pytest_plugins = ["tests.s3server", "tests.log_hygiene"]

DATABASES = ["sqlite", "postgresql"]

#: the files whose tests take longest (servers, child processes, browsers; measured with
#: ``--durations``), longest first. They run first: spread over the xdist workers from the start,
#: they do not leave one worker busy with a long test at the end while the others idle. Only the
#: order changes: every test runs.
LONGEST_FIRST = (
    "tests/e2e/test_wado_memory.py",
    "tests/auth/test_serve_cli.py",
    "tests/api/test_wado_corpus.py",
    "tests/services/test_audit.py",
    "tests/e2e/test_token_revocation.py",
    "tests/browser/",
    "tests/e2e/",
    "tests/cli/",
    "tests/dimse/",
    "tests/api/test_stow_corpus.py",
    "tests/test_log_hygiene.py",
    "tests/test_requirements_doc.py",
    "tests/web/test_oidc.py",
)


@pytest.hookimpl(trylast=True)  # after pytest grouped the tests by their fixtures' parameters
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slowest files first (:data:`LONGEST_FIRST`), otherwise the collection's order."""

    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        for index, prefix in enumerate(LONGEST_FIRST):
            if path.startswith(prefix):
                return index
        return len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: a file's tests keep their order


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A PostgreSQL server URL (never skipped: a missing server fails the run)."""
    with pg.server() as url:
        yield url.render_as_string(hide_password=False)


@pytest.fixture(scope="session", params=DATABASES)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated, session-wide index database of each kind."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "index.db"
        url = f"sqlite+aiosqlite:///{path}"
        asyncio.run(migrate.upgrade(url))
        yield url
        return
    server = request.getfixturevalue("pg_server")
    from sqlalchemy.engine import make_url

    with pg.throwaway_database(make_url(server)) as url:
        asyncio.run(migrate.upgrade(url))
        yield url


#: the issued tokens' registry, the embedded users and their failed sign-ins (issues 22, 23), the
#: remote AEs and jobs, items first (issue 21)
_WEB_TABLES = ("issued_token", "user_account", "login_failure", "remote_ae", "job_item", "job")


async def truncate(db: Database) -> None:
    """Empty the index between tests."""
    async with db.write() as conn:
        if db.is_sqlite:
            for table in ("instance", "series", "study", "tombstone", *_WEB_TABLES):
                await conn.execute(text(f"DELETE FROM {table}"))
        else:
            await conn.execute(
                text(
                    "TRUNCATE instance, series, study, tombstone, "
                    f"{', '.join(_WEB_TABLES)} RESTART IDENTITY CASCADE"
                )
            )


def make_settings(database_url: str, data_dir: Path, **overrides: object) -> Settings:
    """Test settings: the given index, blobs under ``data_dir``, no auto-migration.

    Access control is off here: these settings serve the tests of DICOMweb behaviour. The access
    control tests (tests/auth) build their apps with ``auth_settings`` (the production default,
    on), and the every-route test there covers every route of the app.
    """
    values: dict[str, object] = {
        "database_url": database_url,
        "data_dir": data_dir,
        "storage_url": (data_dir / "blobs").as_uri(),
        "auto_migrate": False,
        "db_pool_size": 4,
        "auth": AuthSettings(enabled=False),
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path / "data")


@pytest_asyncio.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    async with open_services(settings) as opened:
        await truncate(opened.db)
        yield opened


@asynccontextmanager
async def app_client(
    settings: Settings, *, client_addr: tuple[str, int] = ("127.0.0.1", 50000)
) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    """Services on ``settings`` (index emptied) and an ASGI client for an app built on them."""
    async with open_services(settings) as services:
        await truncate(services.db)
        app = create_app(settings, services=services)
        transport = httpx.ASGITransport(app=app, client=client_addr)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            yield services, http


@pytest.fixture(params=DATABASES)
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, unmigrated database of each kind (for servers and migration tests)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    from sqlalchemy.engine import make_url

    with pg.throwaway_database(make_url(request.getfixturevalue("pg_server"))) as url:
        yield url


@pytest_asyncio.fixture
async def client(settings: Settings, services: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, services=services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
