"""End-to-end fixtures: a fresh index database of each kind for a server process."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests import pg


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database (migrated by the server at start)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'index.db'}"
        return
    server = request.getfixturevalue("pg_server")
    with pg.throwaway_database(make_url(server)) as url:
        yield url
