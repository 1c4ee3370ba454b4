"""``lightbox dimse``: the DIMSE listener alone (C-ECHO, C-STORE, Storage Commitment, ...);
``lightbox serve`` runs the same command as a child process (:func:`start_child`), so there is
one listener whatever the number of HTTP workers.

This module is imported by the ``serve`` supervisor: pynetdicom and the services are imported
inside the command only.
"""

import ipaddress
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from app.cli.root import cli
from app.config import DimseSettings, Settings

__all__ = ["DimseChild", "exposure_warning", "start_child"]

log = logging.getLogger(__name__)

#: seconds ``serve`` waits for the DIMSE child to listen
START_TIMEOUT = 60.0
#: seconds the child gets to finish its associations after SIGTERM (the server's own grace is
#: 10 s), then it is killed
STOP_TIMEOUT = 20.0


def exposure_warning(settings: DimseSettings) -> str | None:
    """The warning for a listener reachable beyond this machine that lets any caller in, in
    the clear (DIMSE-14: the allow-list and TLS are DIMSE's only access control).

    >>> exposure_warning(DimseSettings(host="127.0.0.1")) is None
    True
    >>> "0.0.0.0" in exposure_warning(DimseSettings(host="0.0.0.0"))
    True
    >>> exposure_warning(DimseSettings(host="0.0.0.0", allowed_peers=[{"ae_title": "CT1"}]))
    """
    if settings.allowed_peers or settings.tls or _loopback(settings.host):
        return None
    return (
        f"WARNING: DIMSE listens on {settings.host}:{settings.port} for ANY calling AE, "
        "without TLS: whoever reaches this port can store and (with query/retrieve) read "
        "images. Set LIGHTBOX_DIMSE__ALLOWED_PEERS (calling AE titles and/or addresses) and/or "
        "LIGHTBOX_DIMSE__TLS_CERT/_KEY/_CA, or bind 127.0.0.1."
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: assume it is reachable from elsewhere


@cli.command()
def dimse(
    host: Annotated[str | None, typer.Option(help="listen address (LIGHTBOX_DIMSE__HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="DIMSE port (LIGHTBOX_DIMSE__PORT)")] = None,
    ae_title: Annotated[
        str | None, typer.Option(help="our AE title (LIGHTBOX_DIMSE__AE_TITLE)")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="embedded default's data dir")] = None,
    parent: Annotated[int | None, typer.Option(hidden=True)] = None,
    ready_fd: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Run the DIMSE listener alone (`lightbox serve` starts it too, unless
    LIGHTBOX_DIMSE__ENABLED=false)."""
    for env, value in (
        ("LIGHTBOX_DIMSE__HOST", host),
        ("LIGHTBOX_DIMSE__PORT", port),
        ("LIGHTBOX_DIMSE__AE_TITLE", ae_title),
        ("LIGHTBOX_DATA_DIR", data_dir),
    ):
        if value is not None:
            os.environ[env] = str(value)
    settings = Settings()
    from app.logs import configure_logging

    # the server's format (text or JSON lines, app.logs), as serve's own and its workers'
    configure_logging(settings.log_level, settings.log_format, force=True)
    if parent is None:  # under serve, serve has said it already
        warning = exposure_warning(settings.dimse)
        if warning:
            print(warning, file=sys.stderr, flush=True)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    from app.dimse.server import listening

    try:
        with listening(settings) as server:
            dimse_settings = settings.dimse
            print(
                f"Lightbox: DIMSE {dimse_settings.ae_title} at {dimse_settings.host}:{server.port}"
                f"{' (TLS)' if dimse_settings.tls else ''}",
                flush=True,
            )
            if ready_fd is not None:
                os.write(ready_fd, b"1")
                os.close(ready_fd)
            while not stop.wait(1.0):
                if parent is not None and os.getppid() != parent:
                    log.error("DIMSE: the serve process has gone; stopping")
                    break
    except OSError as exc:
        print(f"Lightbox: DIMSE could not start: {exc}", file=sys.stderr, flush=True)
        raise typer.Exit(3) from exc


class DimseChild:
    """The DIMSE listener of ``serve``: a child process, restarted should it die, stopped with
    :meth:`stop`."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="dimse-watch", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while not self._stopping.is_set():
            status = self.process.wait()
            if self._stopping.is_set():
                return
            print(
                f"Lightbox: the DIMSE listener stopped (status {status}); restarting it",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(1.0)
            if self._stopping.is_set():
                return
            try:
                self.process = _spawn()[0]
            except (OSError, RuntimeError) as exc:
                print(f"Lightbox: DIMSE restart failed: {exc}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        """SIGTERM the child and wait for it (SIGKILL after :data:`STOP_TIMEOUT`)."""
        self._stopping.set()
        process = self.process
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _spawn() -> tuple[subprocess.Popen[bytes], bool]:
    """Start ``lightbox dimse`` as a child; True once it listens, False if it exited first."""
    read, write = os.pipe()
    try:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "app", "dimse"),
                *("--parent", str(os.getpid()), "--ready-fd", str(write)),
            ],
            pass_fds=(write,),
        )
    finally:
        os.close(write)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read], [], [], 0.2)
            if ready:
                if os.read(read, 1) == b"1":
                    return process, True
                # closed without a word: the child is exiting
                process.wait(STOP_TIMEOUT)
                return process, False
            if process.poll() is not None:
                return process, False
        process.kill()
        process.wait()
        raise RuntimeError(f"the DIMSE listener did not start within {START_TIMEOUT:.0f} s")
    finally:
        os.close(read)


def start_child(settings: Settings) -> DimseChild | None:
    """Start the DIMSE listener for ``serve`` (None when ``dimse.enabled`` is false); exits
    with status 3 when it cannot listen, as a server that cannot start."""
    if not settings.dimse.enabled:
        return None
    warning = exposure_warning(settings.dimse)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    try:
        process, listening = _spawn()
    except (OSError, RuntimeError) as exc:
        print(f"Lightbox: {exc}; stopping.", file=sys.stderr, flush=True)
        raise typer.Exit(3) from exc
    if not listening:
        process.wait()
        print(
            "Lightbox: the DIMSE listener could not start (see above; "
            "LIGHTBOX_DIMSE__ENABLED=false turns it off); stopping.",
            file=sys.stderr,
            flush=True,
        )
        raise typer.Exit(3)
    return DimseChild(process)
