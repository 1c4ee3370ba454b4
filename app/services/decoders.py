"""Decoders in worker processes: a codec that crashes stops a worker, not the server (issue 19).

The codecs behind pydicom are native code (pylibjpeg-rle in Rust, openjpeg, libjpeg, CharLS), and
some of them abort the whole process when an allocation fails (Rust's allocation error handler
does), dropping every request in flight. The size checks of :mod:`app.dicom.decoding` keep known
bombs away from them; the pool is the second line, for what the checks cannot foresee.

:class:`DecoderPool` runs pure functions of :mod:`app.dicom` (decode a frame, transcode or render
an instance) in up to ``processes`` worker processes, spawned (nothing of the server's threads or
sockets is inherited) on first use and kept. A call takes an idle worker, sends it the function
and its arguments over a pipe (``bytes`` arguments and results without a pickled copy) and waits
for the answer in a thread, so the event loop never blocks; callers keep their own capacity
limiters. Exceptions the function raises come back as they are; a worker that dies during a call
(abort, signal, killed after :data:`CALL_TIMEOUT`) is replaced and the call fails with
:class:`~app.errors.DecoderFailed` (422). Each worker's address space is limited (RLIMIT_AS), so a
runaway allocation fails inside the worker instead of taking the host's memory.

``processes=0`` runs the functions in a thread of the server process instead. The pool is shared
by the services of a process (:func:`shared_pool`): workers hold no state between calls.

Only work that runs a native codec on compressed pixel data is isolated
(:meth:`DecoderPool.needed`): native frames read from the frame index are not decoded at all, and
renderings of native pixels or of an inflated data set (numpy, zlib and Pillow on bounded input)
stay in the server's threads.

Cost (rough, on a loaded 2-core machine): a worker starts in ~0.7 s plus ~0.5 s of imports on its
first call; a call adds ~1-3 ms, and ~2.5 ms per MiB sent or received, to the decode itself
(a 512 x 512 16-bit JPEG 2000 frame decoded to native: ~47 ms in a thread, ~50 ms through a
worker).
"""

import atexit
import logging
import multiprocessing
import resource
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from typing import Any, Final, TypeVar

import anyio
import anyio.to_thread

from app.dicom.uids import ENCAPSULATED
from app.errors import DecoderFailed

__all__ = ["CALL_TIMEOUT", "DecoderPool", "shared_pool"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: a call still running after this many seconds has its worker killed (a codec in a loop)
CALL_TIMEOUT: Final = 300.0
_spawn: Final = multiprocessing.get_context("spawn")


class _Bytes:
    """Stands for the ``index``-th ``bytes`` argument, sent after the call's header."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


def _send_call(conn: Connection, func: Callable[..., Any], args: tuple[Any, ...]) -> None:
    payloads = [a for a in args if isinstance(a, bytes)]
    shown: list[Any] = []
    for arg in args:
        shown.append(_Bytes(len(shown)) if isinstance(arg, bytes) else arg)
    conn.send((func, tuple(shown), len(payloads)))
    for payload in payloads:
        conn.send_bytes(payload)


def _receive_call(conn: Connection) -> tuple[Callable[..., Any], tuple[Any, ...]]:
    func, shown, count = conn.recv()
    payloads = [conn.recv_bytes() for _ in range(count)]
    args = tuple(payloads[a.index] if isinstance(a, _Bytes) else a for a in shown)
    return func, args


def _send_result(conn: Connection, result: Any) -> None:
    if isinstance(result, bytes):
        conn.send(("bytes", 1))
        conn.send_bytes(result)
    elif isinstance(result, list) and all(isinstance(item, bytes) for item in result):
        conn.send(("list", len(result)))
        for item in result:
            conn.send_bytes(item)
    else:
        conn.send(("value", result))


def _receive_result(conn: Connection) -> tuple[bool, Any]:
    """(True, the result) or (False, the exception the function raised)."""
    kind, value = conn.recv()
    if kind == "bytes":
        return True, conn.recv_bytes()
    if kind == "list":
        return True, [conn.recv_bytes() for _ in range(value)]
    return kind != "error", value


def _serve(conn: Connection, memory_limit: int) -> None:
    """A worker's main loop: run calls until the pipe closes (the server went away)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server's Ctrl-C is the server's
    if memory_limit > 0:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = memory_limit if hard == resource.RLIM_INFINITY else min(memory_limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    while True:
        try:
            func, args = _receive_call(conn)
        except (EOFError, OSError):
            return
        try:
            result = func(*args)
        except BaseException as exc:  # it travels back to the caller, who raises it
            try:
                conn.send(("error", exc))
            except Exception:  # an exception that does not pickle
                conn.send(("error", RuntimeError(f"{type(exc).__name__} in a decoder")))
            continue
        del args
        _send_result(conn, result)


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, memory_limit: int) -> None:
        parent, child = _spawn.Pipe()
        self.conn = parent
        self.process: SpawnProcess = _spawn.Process(
            target=_serve, args=(child, memory_limit), name="lightbox-decoder", daemon=True
        )
        self.process.start()
        child.close()  # the worker's death must close the pipe: the parent then reads EOF

    def send(self, func: Callable[..., Any], args: tuple[Any, ...]) -> None:
        _send_call(self.conn, func, args)

    def receive(self, timeout: float) -> tuple[bool, Any]:
        """The answer (see ``_receive_result``); OSError / EOFError when the worker died."""
        if not self.conn.poll(timeout):
            raise TimeoutError
        return _receive_result(self.conn)

    def close(self) -> None:
        self.conn.close()
        if self.process.exitcode is None:
            self.process.kill()
        self.process.join(5)


class DecoderPool:
    """Up to ``processes`` decoder processes (0: threads of this process), see the module."""

    def __init__(
        self, processes: int, *, memory_limit: int = 0, timeout: float = CALL_TIMEOUT
    ) -> None:
        self.processes = processes
        self._memory_limit = memory_limit
        self._timeout = timeout
        self._slots = threading.BoundedSemaphore(max(1, processes))
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._closed = False

    async def run(
        self,
        func: Callable[..., T],
        *args: Any,
        limiter: anyio.CapacityLimiter | None = None,
        isolate: bool = True,
    ) -> T:
        """``func(*args)`` in a worker (waited for in a thread, under ``limiter``); in the thread
        itself when ``isolate`` is false (no native codec runs: native pixels, an inflate)."""
        if self.processes == 0 or not isolate:
            return await anyio.to_thread.run_sync(func, *args, limiter=limiter)
        return await anyio.to_thread.run_sync(self.call, func, *args, limiter=limiter)

    @staticmethod
    def needed(transfer_syntax: str) -> bool:
        """Whether decoding pixel data stored in ``transfer_syntax`` runs a native codec (the
        encapsulated syntaxes), so it is isolated; native pixels and deflated data sets are
        read by numpy and zlib, which fail with exceptions, and stay in the server's threads.

        >>> DecoderPool.needed("1.2.840.10008.1.2.5"), DecoderPool.needed("1.2.840.10008.1.2.1")
        (True, False)
        """
        return transfer_syntax in ENCAPSULATED

    def call(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` in a worker, blocking the calling thread until it answers."""
        with self._slots:
            worker = self._sent(func, args)
            try:
                ok, value = worker.receive(self._timeout)
            except (EOFError, OSError) as exc:  # TimeoutError is an OSError
                code = worker.process.exitcode
                worker.close()
                log.error(
                    "decoder process stopped during %s (%s)",
                    getattr(func, "__name__", "a call"),
                    "timed out" if isinstance(exc, TimeoutError) else f"exit code {code}",
                )
                raise DecoderFailed(
                    "the pixel data could not be decoded: the decoder stopped (it crashed, ran "
                    "out of memory or took too long)"
                ) from None
            self._give(worker)
        if not ok:
            raise value  # the function's own exception: the worker is fine
        result: T = value
        return result

    def _sent(self, func: Callable[..., Any], args: tuple[Any, ...]) -> _Worker:
        """A worker the call was sent to; one that died while idle is replaced once."""
        for attempt in (1, 2):
            worker = self._take()
            try:
                worker.send(func, args)
                return worker
            except (EOFError, OSError):
                worker.close()
                if attempt == 2:
                    raise DecoderFailed("no decoder process could be started") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _take(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise DecoderFailed("the decoders are shut down")
            if self._idle:
                return self._idle.pop()
        return _Worker(self._memory_limit)

    def _give(self, worker: _Worker) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(worker)
                return
        worker.close()

    def close(self) -> None:
        """Stop the idle workers (a busy one stops when its call returns)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.close()


_POOLS: dict[tuple[int, int], DecoderPool] = {}
_POOLS_LOCK: Final = threading.Lock()


def shared_pool(processes: int, memory_limit: int) -> DecoderPool:
    """The process-wide pool of these settings (workers are stateless, so services share it)."""
    with _POOLS_LOCK:
        pool = _POOLS.get((processes, memory_limit))
        if pool is None:
            pool = _POOLS[(processes, memory_limit)] = DecoderPool(
                processes, memory_limit=memory_limit
            )
        return pool


@atexit.register
def _close_pools() -> None:
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.close()
