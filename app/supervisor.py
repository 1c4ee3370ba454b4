"""Several worker processes, managed by gunicorn's arbiter running uvicorn workers.

``lightbox serve --workers N`` (``LIGHTBOX_WORKERS``) leaves process management to a kept
process manager. gunicorn forks N workers, which all accept from one listening socket, and:

- starts another worker when one dies;
- kills and replaces a worker whose event loop has not turned for ``worker_timeout`` seconds:
  uvicorn's server loop touches gunicorn's heartbeat file (uvicorn's ``callback_notify``,
  which uvicorn_worker wires to gunicorn's ``notify``), so a loop stuck in a request, or a
  stopped process, stops the heartbeat;
- stops with exit status 3 when a worker cannot start (the app, its settings, TLS): it would
  fail the same way again;
- on SIGTERM closes the listening socket and lets the workers finish their requests (up to
  ``graceful_timeout``, 30 s); on SIGHUP starts new workers and stops the old ones gracefully;
  SIGTTIN and SIGTTOU add and remove a worker.

Each worker runs the uvicorn configuration a single-process server runs (the ``options`` the
``serve`` command builds: the connection guard of :mod:`app.connections`, TLS, keep-alive). Only
documented extension points are used: a gunicorn custom application (``BaseApplication`` with
``load_config`` and ``load``), and uvicorn_worker's ``CONFIG_KWARGS``, its way of passing uvicorn
settings to the worker.

Why not uvicorn's own workers (``uvicorn.run(..., workers=N)``): its parent pings a thread of
each worker, not the event loop, so a worker whose loop is stuck in Python code answers and is
kept; and it returns normally when a worker cannot start, so the exit status would not say so.

What the earlier supervisor (a parent that accepted and handed each connection to the worker
holding the fewest) did and this does not:

- balance connections: the kernel gives a new connection to whichever worker waits in accept,
  so a viewer's few keep-alive connections can all land on one worker while another idles.
  Balance by least connections at the load balancer in front of the server instead
  (docs/operations.md); ``bench/lib/viewers.py`` measures what it is worth.
- wait for a new worker to serve before stopping an old one on SIGHUP: gunicorn stops the old
  ones once the new ones are forked, so new connections wait in the listening socket's backlog
  until a new worker serves (none is refused).
- bound a worker's start: gunicorn's heartbeat starts once the worker serves, so a start that
  hangs (a database that never answers) is not timed out.

Logs and metrics: gunicorn's own records are written in the server's log format (its handlers
get :mod:`app.logs`' formatter, :func:`_logger_class`); its access log is off, the app logs
each request itself without the query string. When a worker ends, its live gauges are dropped
from the run's metrics (``child_exit``, :func:`app.telemetry.mark_dead`); a worker closes the
metrics listener's socket it inherits (``post_fork``), which the arbiter serves.
"""

import math
from pathlib import Path
from typing import Any, Final

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger
from uvicorn_worker import UvicornWorker

from app import telemetry
from app.logs import formatter_for

__all__ = ["gunicorn_options", "serve_workers"]

#: uvicorn's server loop notifies once a second at best: a shorter timeout would kill workers
#: that are only idle
_MIN_TIMEOUT: Final = 2
#: a RAM-backed directory for the heartbeat files (a busy disk would delay the heartbeat)
_SHM: Final = Path("/dev/shm")


def _logger_class(log_format: str) -> type[Logger]:
    """gunicorn's logger, writing in ``log_format`` (:mod:`app.logs`)."""

    class LightboxLogger(Logger):
        def setup(self, cfg: Any) -> None:
            super().setup(cfg)
            for handler in self.error_log.handlers:
                handler.setFormatter(formatter_for(log_format, getattr(handler, "stream", None)))

    return LightboxLogger


def _child_exit(_server: Any, worker: Any) -> None:
    telemetry.mark_dead(worker.pid)


def gunicorn_options(
    host: str,
    port: int,
    workers: int,
    worker_timeout: float,
    log_level: str,
    *,
    log_format: str = "auto",
    metrics_listener: telemetry.Listener | None = None,
) -> dict[str, Any]:
    """gunicorn's settings for a server of ``workers`` processes on ``host:port``.

    >>> options = gunicorn_options("::", 8080, 4, 2.5, "info")
    >>> options["bind"], options["workers"], options["timeout"]
    (['[::]:8080'], 4, 3)
    >>> gunicorn_options("0.0.0.0", 80, 2, 0, "info")["timeout"]
    0
    """
    address = f"[{host}]" if ":" in host else host
    timeout = 0 if worker_timeout <= 0 else max(_MIN_TIMEOUT, math.ceil(worker_timeout))
    options: dict[str, Any] = {
        "bind": [f"{address}:{port}"],
        "workers": workers,
        # 0: never; gunicorn counts whole seconds
        "timeout": timeout,
        "loglevel": log_level,
        "errorlog": "-",
        "logger_class": _logger_class(log_format),
        # the app logs each request itself, without the query string (app.api.observe)
        "accesslog": None,
        "proc_name": "lightbox",
        # else every server of the machine would share $HOME/.gunicorn/gunicorn.ctl
        "control_socket_disable": True,
        # a dead worker's live gauges leave the run's metrics
        "child_exit": _child_exit,
    }
    if metrics_listener is not None:
        listener = metrics_listener

        def post_fork(_server: Any, _worker: Any) -> None:
            listener.close_in_child()

        options["post_fork"] = post_fork
    if _SHM.is_dir():
        options["worker_tmp_dir"] = str(_SHM)
    return options


class _Lightbox(BaseApplication):
    """gunicorn's application: our settings, and the ASGI app built in each worker."""

    def __init__(self, options: dict[str, Any]) -> None:
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for name, value in self._options.items():
            self.cfg.set(name, value)

    def load(self) -> Any:
        # in the worker, after the fork: the parent never loads the app, its pools or codecs
        from app.main import create_app

        return create_app()


def serve_workers(options: dict[str, Any], uvicorn_options: dict[str, Any]) -> int:
    """Run gunicorn with ``options`` and uvicorn workers configured with ``uvicorn_options``
    until SIGTERM or SIGINT; the exit status (uvicorn's ``STARTUP_FAILURE``, 3, which is also
    gunicorn's: a worker could not start)."""
    worker = type("LightboxWorker", (UvicornWorker,), {"CONFIG_KWARGS": dict(uvicorn_options)})
    try:
        _Lightbox({**options, "worker_class": worker}).run()
    except SystemExit as stop:  # gunicorn always leaves through sys.exit
        status = stop.code
    else:
        status = 0
    if status is None:
        return 0
    return status if isinstance(status, int) else 1
