"""One event loop for the services of the DIMSE process, called from pynetdicom's threads.

pynetdicom calls handlers synchronously, one thread per association. Running the async services
with ``asyncio.run`` in each handler would open a loop (and a database pool, an audit writer) per
call; running them in the HTTP workers' loops would block those. Instead the DIMSE process owns
one loop in one thread (the *services thread*): ``run`` submits a coroutine to it and blocks the
calling association thread until the result is there, and ``iterate`` turns an async iterator
(C-FIND matches, C-GET instances) into a blocking one. The loop is thus shared by every
association, and requests of concurrent associations meet in it (which is what lets C-STOREs of
several associations share one index transaction).
"""

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager, suppress
from typing import Any, TypeVar

T = TypeVar("T")


class BridgeClosed(RuntimeError):
    """The services thread has stopped (the server is shutting down)."""


class Bridge:
    """An event loop in a thread of its own, and blocking calls into it from other threads."""

    def __init__(self, name: str = "dimse-services") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._started = threading.Event()
        self._closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def start(self) -> None:
        self._thread.start()
        self._started.wait()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._started.set)
        self._loop.run_forever()
        # stopped: finish what is still scheduled (async generators, the default executor)
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.run_until_complete(self._loop.shutdown_default_executor())
        self._loop.close()

    def in_services_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> "concurrent.futures.Future[T]":
        """Schedule ``coro`` on the loop; the caller decides how long to wait for it."""
        if self._closed:
            coro.close()
            raise BridgeClosed("the DIMSE services have stopped")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result (or its exception).

        On ``timeout`` the coroutine is cancelled and ``TimeoutError`` raised. Must not be called
        from the services thread itself (it would wait for itself forever).
        """
        if self.in_services_thread():
            coro.close()
            raise RuntimeError("Bridge.run called from the services thread")
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"a DIMSE service call took longer than {timeout} s") from None

    def call(self, function: Callable[[], Awaitable[T]], timeout: float | None = None) -> T:
        """``run`` for a callable that builds the awaitable on the loop (e.g. ``lambda: x()``)."""

        async def invoke() -> T:
            return await function()

        return self.run(invoke(), timeout)

    def iterate(
        self, items: AsyncIterator[T], timeout: float | None = None, *, batch: int = 1
    ) -> Generator[T, None, None]:
        """A blocking iterator over an async iterator that lives on the loop.

        Each hop into the loop takes up to ``batch`` items (a hop costs tens of µs and two
        thread wake-ups; C-FIND matches come from a page already read, so it takes many at a
        time). Closing the returned generator early (a C-CANCEL, a dropped association) closes
        the async iterator on the loop, so its database cursor or open blob is released.
        """

        async def step() -> tuple[list[T], bool]:
            taken: list[T] = []
            try:
                while len(taken) < batch:
                    taken.append(await anext(items))
            except StopAsyncIteration:
                return taken, False
            return taken, True

        try:
            more = True
            while more:
                taken, more = self.run(step(), timeout)
                yield from taken
        finally:
            close = getattr(items, "aclose", None)
            if close is not None and not self._closed:
                with suppress(BridgeClosed):
                    self.run(close(), timeout)

    @contextmanager
    def entered(self, manager: AbstractAsyncContextManager[T]) -> Iterator[T]:
        """Enter an async context manager on the loop for the duration of a ``with`` block
        (``with bridge.entered(open_services(settings)) as services``)."""
        value = self.run(manager.__aenter__())
        try:
            yield value
        except BaseException as exc:
            if not self.run(manager.__aexit__(type(exc), exc, exc.__traceback__)):
                raise
        else:
            self.run(manager.__aexit__(None, None, None))

    def stop(self) -> None:
        """Stop the loop after the calls in flight; later calls raise ``BridgeClosed``."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
