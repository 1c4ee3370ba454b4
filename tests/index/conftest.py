"""Fixtures of the index tests."""

from collections.abc import AsyncIterator

import pytest_asyncio

from app.index.db import Database
from tests.conftest import truncate


@pytest_asyncio.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """The session's index database of each kind, emptied before and after the test."""
    database = Database(database_url)
    await truncate(database)
    try:
        yield database
    finally:
        await truncate(database)
        await database.close()
