"""A coroutine run beside a block of code: started when the block is entered, cancelled (and
awaited) when it is left, however it is left. The housekeeping loop beside the server, a lease's
renewals beside its job, the metrics sampler beside a worker."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any


@contextlib.asynccontextmanager
async def in_background(
    work: Coroutine[Any, Any, object], name: str | None = None
) -> AsyncIterator[None]:
    task = asyncio.get_running_loop().create_task(work, name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
