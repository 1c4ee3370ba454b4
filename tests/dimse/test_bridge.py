"""The bridge: coroutines of one loop called from other (association) threads."""

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest

from app.dimse.bridge import Bridge, BridgeClosed


@pytest.fixture
def bridge() -> Iterator[Bridge]:
    bridge = Bridge()
    bridge.start()
    yield bridge
    bridge.stop()


def test_run_returns_the_result_computed_on_the_services_thread(bridge: Bridge) -> None:
    async def where() -> str:
        await asyncio.sleep(0)
        return threading.current_thread().name

    assert bridge.run(where()) == "dimse-services"


def test_run_raises_the_coroutines_exception(bridge: Bridge) -> None:
    async def fail() -> None:
        raise ValueError("no such study")

    with pytest.raises(ValueError, match="no such study"):
        bridge.run(fail())


def test_run_cancels_on_timeout(bridge: Bridge) -> None:
    cancelled = threading.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError):
        bridge.run(slow(), timeout=0.05)
    assert cancelled.wait(2)


def test_concurrent_threads_share_one_loop(bridge: Bridge) -> None:
    """Calls from many association threads meet in one loop: a gathering point sees them all."""
    arrived: list[int] = []
    all_here = asyncio.Event()

    async def meet(i: int) -> int:
        arrived.append(i)
        if len(arrived) == 8:
            all_here.set()
        await asyncio.wait_for(all_here.wait(), 5)
        return len(arrived)

    results: list[int] = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(bridge.run(meet(i)))) for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [8] * 8


def test_iterate_yields_in_order_and_closes_the_source_when_abandoned(bridge: Bridge) -> None:
    closed = threading.Event()

    async def numbers() -> AsyncIterator[int]:
        try:
            for i in range(1000):
                yield i
        finally:
            closed.set()

    assert list(bridge.iterate(numbers())) == list(range(1000))
    closed.clear()
    it = bridge.iterate(numbers())
    assert [next(it), next(it)] == [0, 1]
    it.close()  # what a C-CANCEL does
    assert closed.wait(2)


def test_iterate_in_batches_keeps_order_and_closing(bridge: Bridge) -> None:
    """Several items per hop (C-FIND): the same items in the same order, the last batch short,
    and closing early still closes the source."""
    closed = threading.Event()

    async def numbers(count: int) -> AsyncIterator[int]:
        try:
            for i in range(count):
                yield i
        finally:
            closed.set()

    assert list(bridge.iterate(numbers(1000), batch=64)) == list(range(1000))
    assert list(bridge.iterate(numbers(0), batch=64)) == []
    closed.clear()
    it = bridge.iterate(numbers(1000), batch=64)
    assert [next(it) for _ in range(70)] == list(range(70))
    it.close()
    assert closed.wait(2)


def test_entered_opens_and_closes_on_the_loop(bridge: Bridge) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def resource() -> AsyncIterator[str]:
        events.append("open " + threading.current_thread().name)
        yield "db"
        events.append("close")

    with bridge.entered(resource()) as value:
        assert value == "db"
    assert events == ["open dimse-services", "close"]


def test_calls_after_stop_are_refused() -> None:
    bridge = Bridge()
    bridge.start()
    bridge.stop()

    async def nothing() -> None:
        return None

    with pytest.raises(BridgeClosed):
        bridge.run(nothing())


def test_run_from_the_services_thread_is_refused(bridge: Bridge) -> None:
    async def nested() -> str:
        async def inner() -> None:
            return None

        try:
            bridge.run(inner())
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    assert "services thread" in bridge.run(nested())
