"""A multi-worker server whose parent process hands each connection to the least busy worker.

uvicorn's own multi-worker mode lets every worker accept from one shared listening socket, and
the kernel wakes whichever worker it likes: four keep-alive connections from a viewer land 4/0
on two workers as often as 2/2, and one core then serves everything while the other idles (the
p95 of ``/frames`` at four clients went from 3.9 ms with a 2/2 split to 5.2 ms with 4/0).

Here the parent alone accepts. For each connection it picks the ready worker with the fewest
open connections (ties in turn) and passes the socket over a Unix socket (``SCM_RIGHTS``); the
worker serves it like one it accepted itself (``loop.connect_accepted_socket``). Counting needs
no messages: the parent counts what it handed out, each worker counts in shared memory the
connections it has finished, and the difference is what the worker holds now. Keep-alive
clients pay the hand-off once per connection (tens of microseconds), not per request.

The parent also restarts a worker that dies, stops when one cannot start (exit code 3, uvicorn's
STARTUP_FAILURE), replaces the workers one by one on SIGHUP, and on SIGINT/SIGTERM stops
accepting, then lets the workers finish their requests (uvicorn's graceful shutdown) and exits.

A worker whose event loop stops turning (a deadlock, a request stuck in a loop, a process
stopped) would keep its connections waiting forever. Each worker's loop writes the time into
shared memory every second; a worker silent for longer than the timeout (``worker_timeout``,
30 s by default) is killed and replaced like one that died.
"""

import asyncio
import contextlib
import functools
import logging
import multiprocessing
import os
import selectors
import signal
import socket
import time
from collections.abc import Iterable
from ctypes import c_double, c_int64
from multiprocessing.context import SpawnProcess
from typing import Any, Final

import uvicorn
from uvicorn.config import STARTUP_FAILURE

__all__ = ["Balancer", "least_busy"]

log = logging.getLogger("uvicorn.error")

_spawn: Final = multiprocessing.get_context("spawn")
#: parent -> worker: one byte with the passed descriptors; worker -> parent: this when it serves
_READY: Final = b"R"
_HANDOFF: Final = b"C"
#: descriptors received per message at most (the parent sends one per message)
_MAX_FDS: Final = 16
#: how long a new worker may take to start serving (migrations are done before the workers)
_START_TIMEOUT: Final = 120.0
_STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
#: how often a worker's event loop says it is turning (:class:`_HandedServer`), and how often
#: the parent looks at starting and silent workers
_BEAT_SECONDS: Final = 1.0
_CHECK_SECONDS: Final = 1.0


def least_busy(open_connections: Iterable[int | None], start: int) -> int | None:
    """The index of the smallest count (``None`` marks a worker not serving), searching from
    ``start`` round the list so that equal counts take turns.

    >>> least_busy([2, 1, 1], start=0), least_busy([2, 1, 1], start=2)
    (1, 2)
    >>> least_busy([None, 5], start=0), least_busy([None, None], start=0) is None
    (1, True)
    """
    counts = list(open_connections)
    best: int | None = None
    lowest = 0
    for step in range(len(counts)):
        i = (start + step) % len(counts)
        count = counts[i]
        if count is not None and (best is None or count < lowest):
            best, lowest = i, count
    return best


class _CountedConnections(set[Any]):
    """uvicorn's set of open connections (``server_state.connections``), counting in shared
    memory each connection it lets go: every uvicorn HTTP protocol adds itself on
    ``connection_made`` and ``discard``s itself when the connection is lost (sometimes twice:
    counted once); nothing else removes from the set."""

    def __init__(self, finished: Any) -> None:
        super().__init__()
        self._finished = finished

    def discard(self, item: Any) -> None:
        if item in self:
            super().discard(item)
            self._finished.value += 1


class _HandedServer(uvicorn.Server):
    """A uvicorn server that listens on nothing and serves the sockets its parent hands over."""

    def __init__(
        self,
        config: uvicorn.Config,
        channel: socket.socket,
        finished: Any,
        beat: Any,
    ) -> None:
        super().__init__(config)
        self._channel = channel
        #: a shared ``c_int64``: the connections this worker has finished (the parent reads it)
        self._finished = finished
        #: a shared ``c_double``: when this worker's event loop last turned (``time.monotonic``,
        #: one clock for every process of the machine)
        self._beat = beat
        self._tasks: set[asyncio.Task[None]] = set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:  # noqa: ARG002
        await super().startup(sockets=[])  # the app's lifespan; no listening socket
        if not self.started:
            return
        self.server_state.connections = _CountedConnections(self._finished)
        config = self.config
        protocol = functools.partial(
            config.http_protocol_class,  # type: ignore[call-arg]
            config=config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
        )
        loop = asyncio.get_running_loop()
        self._channel.setblocking(False)
        loop.add_reader(self._channel.fileno(), self._receive, loop, protocol)
        self._heartbeat(loop)
        self._channel.send(_READY)

    def _heartbeat(self, loop: asyncio.AbstractEventLoop) -> None:
        self._beat.value = time.monotonic()
        loop.call_later(_BEAT_SECONDS, self._heartbeat, loop)

    def _receive(self, loop: asyncio.AbstractEventLoop, protocol: Any) -> None:
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(self._channel, 64, _MAX_FDS)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            if not data and not fds:  # the parent is gone: finish what is open, then stop
                loop.remove_reader(self._channel.fileno())
                self.should_exit = True
                return
            for fd in fds:
                sock = socket.socket(fileno=fd)
                if self.should_exit:
                    sock.close()
                    self._finished.value += 1
                    continue
                task = loop.create_task(self._connect(loop, protocol, sock))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _connect(
        self, loop: asyncio.AbstractEventLoop, protocol: Any, sock: socket.socket
    ) -> None:
        try:
            await loop.connect_accepted_socket(protocol, sock, ssl=self.config.ssl)
        except Exception as exc:  # a failed TLS handshake, a client already gone
            log.debug("connection not started: %s", exc)
            sock.close()
            self._finished.value += 1  # it never joined the open connections

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._channel.fileno())
        self._channel.close()
        await super().shutdown(sockets=sockets)


def _worker_main(config: uvicorn.Config, channel: socket.socket, finished: Any, beat: Any) -> None:
    """A worker process's entry point (spawned: nothing of the parent's state is inherited)."""
    config.configure_logging()
    with contextlib.suppress(KeyboardInterrupt):
        _HandedServer(config, channel, finished, beat).run()


class _Worker:
    """One worker process, its end of the hand-off channel, and what the parent counts of it."""

    def __init__(self, config: uvicorn.Config, slot: int) -> None:
        self.slot = slot
        self.channel, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.channel.setblocking(False)
        #: connections handed to the worker, and (shared) those it has finished
        self.handed = 0
        self.finished = _spawn.RawValue(c_int64, 0)
        #: when its event loop last turned (shared; written by the worker once it serves)
        self.beat = _spawn.RawValue(c_double, 0.0)
        #: killed by the parent for not answering (said once)
        self.killed = False
        #: taking connections now; ``served``: it did once (so an exit is not a failed start)
        self.ready = False
        self.served = False
        self.started_at = time.monotonic()
        self.process: SpawnProcess = _spawn.Process(
            target=_worker_main,
            args=(config, child, self.finished, self.beat),
            name=f"lightbox-{slot}",
        )
        self.process.start()
        child.close()

    def stop(self) -> None:
        if self.process.exitcode is None and self.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGTERM)


class Balancer:
    """The parent process of a multi-worker server (:mod:`app.supervisor`)."""

    def __init__(self, config: uvicorn.Config, *, worker_timeout: float = 30.0) -> None:
        self.config = config
        self.count = max(1, config.workers)
        #: a serving worker whose event loop is silent this long is killed (0: never)
        self.worker_timeout = worker_timeout
        self._workers: list[_Worker] = []
        #: SIGHUP: the new worker of each slot, until it serves
        self._replacing: dict[int, _Worker] = {}
        #: old workers finishing their connections
        self._retired: set[_Worker] = set()
        self._turn = 0
        self._selector = selectors.DefaultSelector()
        self._exit_code = 0
        self._accept_error_logged = 0.0
        self._listening = False
        self._stopping = False

    # --- the loop ---------------------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGINT/SIGTERM; the process's exit code."""
        listener = self.config.bind_socket()  # logs where it listens
        listener.listen(self.config.backlog)
        listener.setblocking(False)
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        previous = {
            sig: signal.signal(sig, lambda *_: None) for sig in (*_STOP_SIGNALS, signal.SIGHUP)
        }
        old_wakeup = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        log.info("Started parent process [%d], %d workers", os.getpid(), self.count)
        try:
            self._selector.register(wake_r, selectors.EVENT_READ, "signal")
            self._workers = [self._start(slot) for slot in range(self.count)]
            next_check = 0.0
            while not self._stopping:
                self._listen(listener)
                for key, _events in self._selector.select(timeout=_CHECK_SECONDS):
                    self._dispatch(key, listener, wake_r)
                now = time.monotonic()
                if now >= next_check:  # not on every accept: once a second is soon enough
                    next_check = now + _CHECK_SECONDS
                    self._check_starting(now)
                    self._check_alive(now)
        finally:
            self._unregister(listener)
            listener.close()  # new connections are refused from here on
            self._stop_all()
            signal.set_wakeup_fd(old_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            wake_r.close()
            wake_w.close()
            self._selector.close()
            log.info("Stopping parent process [%d]", os.getpid())
        return self._exit_code

    def _dispatch(
        self, key: selectors.SelectorKey, listener: socket.socket, wake: socket.socket
    ) -> None:
        what = key.data
        if what == "accept":
            self._accept(listener)
        elif what == "signal":
            with contextlib.suppress(BlockingIOError):
                for sig in wake.recv(64):
                    self._on_signal(sig)
        elif isinstance(what, tuple) and what[0] == "exit":
            self._on_exit(what[1])
        elif isinstance(what, tuple) and what[0] == "message":
            self._on_message(what[1])

    def _on_signal(self, sig: int) -> None:
        if sig in _STOP_SIGNALS:
            log.info("Received %s, exiting.", signal.Signals(sig).name)
            self._stopping = True
        elif sig == signal.SIGHUP:
            log.info("Received SIGHUP, replacing the workers one by one.")
            self._replace_all()

    # --- workers ----------------------------------------------------------------------------

    def _start(self, slot: int) -> _Worker:
        worker = _Worker(self.config, slot)
        self._selector.register(worker.process.sentinel, selectors.EVENT_READ, ("exit", worker))
        self._selector.register(worker.channel, selectors.EVENT_READ, ("message", worker))
        return worker

    def _on_message(self, worker: _Worker) -> None:
        try:
            data = worker.channel.recv(16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if data == _READY:
            worker.ready = worker.served = True
            if self._replacing.get(worker.slot) is worker:  # SIGHUP: the new one serves
                del self._replacing[worker.slot]
                self._retire(self._workers[worker.slot])
                self._workers[worker.slot] = worker
        elif not data:  # the worker closed its end: it is stopping
            worker.ready = False
            self._unregister(worker.channel)

    def _on_exit(self, worker: _Worker) -> None:
        worker.process.join()
        self._unregister(worker.process.sentinel)
        self._unregister(worker.channel)
        worker.channel.close()
        self._retired.discard(worker)
        code = worker.process.exitcode
        if self._stopping:
            return
        if self._replacing.get(worker.slot) is worker:
            del self._replacing[worker.slot]
            log.error("A replacement worker exited (code %s); the old one stays.", code)
        elif self._workers[worker.slot] is worker:
            if not worker.served:  # it would fail the same way again: the app, TLS, settings
                log.error(
                    "Worker [%s] failed to start (code %s); stopping.", worker.process.pid, code
                )
                self._exit_code = STARTUP_FAILURE
                self._stopping = True
                return
            log.warning("Worker [%s] exited (code %s); starting another.", worker.process.pid, code)
            self._workers[worker.slot] = self._start(worker.slot)

    def _check_starting(self, now: float) -> None:
        for worker in [*self._workers, *self._replacing.values()]:
            if not worker.ready and now - worker.started_at > _START_TIMEOUT:
                log.error(
                    "Worker [%s] did not start in %.0f s.", worker.process.pid, _START_TIMEOUT
                )
                if worker in self._workers:
                    self._exit_code = STARTUP_FAILURE
                    self._stopping = True
                else:
                    worker.started_at = now  # do not say it again; it is stopped below
                    worker.stop()

    def _check_alive(self, now: float) -> None:
        """Kill a worker whose event loop has been silent too long (it served, so it beats);
        its exit is then handled like any other (:meth:`_on_exit`: replaced)."""
        if self.worker_timeout <= 0:
            return
        for worker in [*self._workers, *self._replacing.values(), *self._retired]:
            silent = now - worker.beat.value
            if not worker.served or worker.killed or silent <= self.worker_timeout:
                continue
            log.error(
                "Worker [%s] has not answered for %.0f s; killing it.", worker.process.pid, silent
            )
            worker.ready = False  # no more connections for it
            worker.killed = True
            with contextlib.suppress(ProcessLookupError):
                worker.process.kill()

    def _replace_all(self) -> None:
        """SIGHUP: start a new worker per slot; as each one serves, the old one stops taking
        connections and finishes those it has (:meth:`_on_message`)."""
        for slot in range(len(self._workers)):
            if slot not in self._replacing:
                self._replacing[slot] = self._start(slot)

    def _retire(self, worker: _Worker) -> None:
        """Stop handing ``worker`` connections and let it end gracefully (reaped on exit)."""
        worker.ready = False
        self._unregister(worker.channel)
        worker.channel.close()  # it sees the channel close and stops, like on SIGTERM
        worker.stop()
        self._retired.add(worker)

    def _unregister(self, obj: Any) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(obj)

    def _grace(self) -> float:
        return float(self.config.timeout_graceful_shutdown or 30) + 5

    def _stop_all(self) -> None:
        everyone = [*self._workers, *self._replacing.values(), *self._retired]
        for worker in everyone:
            worker.channel.close()  # it stops taking connections
            worker.stop()
        deadline = time.monotonic() + self._grace()
        for worker in everyone:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.exitcode is None:
                log.error("Worker [%s] did not stop in time; killing it.", worker.process.pid)
                worker.process.kill()
                worker.process.join()

    # --- connections ------------------------------------------------------------------------

    def open_connections(self) -> list[int | None]:
        """Each worker's open connections (``None``: not serving yet)."""
        return [w.handed - w.finished.value if w.ready else None for w in self._workers]

    def _listen(self, listener: socket.socket) -> None:
        """Accept only while a worker serves: until then connections wait in the backlog."""
        serving = any(w.ready for w in self._workers)
        if serving and not self._listening:
            self._selector.register(listener, selectors.EVENT_READ, "accept")
        elif not serving and self._listening:
            self._unregister(listener)
        self._listening = serving

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: try again on the next wake-up
                now = time.monotonic()
                if now - self._accept_error_logged > 1.0:
                    self._accept_error_logged = now
                    log.error("accept failed: %s", exc)
                time.sleep(0.01)
                return
            with conn:
                self._hand_over(conn)

    def _hand_over(self, conn: socket.socket) -> None:
        counts = self.open_connections()
        tried: set[int] = set()
        while len(tried) < len(counts):
            slot = least_busy(
                (c if i not in tried else None for i, c in enumerate(counts)), self._turn
            )
            if slot is None:
                break
            tried.add(slot)
            worker = self._workers[slot]
            try:
                socket.send_fds(worker.channel, [_HANDOFF], [conn.fileno()])
            except (BlockingIOError, InterruptedError, OSError):
                continue  # its channel is full or closed: the next one
            worker.handed += 1
            self._turn = (slot + 1) % len(counts)
            return
        log.warning("no worker could take a connection; closing it")
