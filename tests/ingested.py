"""Instances stored through the ingest service (the STOW-RS path without HTTP): for the tests
that need studies in the index before they act on them."""

from app.services.container import Services
from app.services.ingest import IngestResult


async def ingest(services: Services, *files: bytes) -> IngestResult:
    """Ingest the PS3.10 ``files`` in one session; its result (refusals included)."""
    session = services.ingest.session()
    for raw in files:
        spool = services.ingest.spool()
        spool.write(raw)
        await session.add(spool.finish())
    return await session.finish()


async def store(services: Services, *files: bytes) -> None:
    """Ingest ``files``, every one of which must be stored."""
    result = await ingest(services, *files)
    assert all(o.stored for o in result.outcomes), [o.message for o in result.outcomes]
