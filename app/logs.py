"""Logging: one handler for the whole process, text or JSON lines, with the request's id; and the
libraries' expected failures without tracebacks.

:func:`configure_logging` installs the handler every logger of the process writes through
(ours, uvicorn's, and gunicorn's via :mod:`app.supervisor`), in one of two formats
(``LIGHTBOX_LOG_FORMAT``): text, the default on a terminal, or JSON lines, the default
elsewhere (a container, a file, a log shipper), one object per record with ``time``, ``level``,
``logger``, ``message``, ``pid``, the ``request_id`` of the request being served (from a
context variable the HTTP middleware sets, so every record a request causes carries it, also
from worker threads) and, on the access log's lines (``lightbox.access``, :mod:`app.api.observe`),
``method``, ``route`` (the route's template, never the path's values), ``status``,
``duration_ms`` and ``actor``. A traceback is one field (``traceback``) of its record.

No PHI: what a request asked for (the path's UIDs, the query string with patient names, a
token in a URL) is never put into a record by Lightbox; the route template and the request id
lead to the audit trail, which holds the rest under access control.

pydicom's and pylibjpeg's codec dispatchers log every plugin's failure with ``logger.exception``
(ERROR, with a traceback) and then either try the next plugin or raise an exception of their
own. Lightbox catches that exception and answers with a specific error (a corrupt or
undecodable frame is a 406 with its reason, :mod:`app.dicom.transcode`), so the ERROR record is
a second, misleading report of a refusal that was answered correctly. :func:`quiet_codec_logs`
turns those records into one DEBUG line each (the plugin's message, no traceback).
"""

import logging
import sys
import time
from contextvars import ContextVar, Token
from typing import Any, Final, TextIO

import orjson

__all__ = [
    "ACCESS_FIELDS",
    "CODEC_LOGGERS",
    "JsonFormatter",
    "TextFormatter",
    "bind_request_id",
    "configure_logging",
    "current_request_id",
    "formatter_for",
    "quiet_codec_logs",
    "reset_request_id",
    "wants_json",
]

#: the loggers of the codec dispatchers that log each plugin failure with its traceback (a
#: logger's filters see only the records logged on it, so they are named one by one; a test
#: decoding a corrupt frame fails if the libraries move them)
CODEC_LOGGERS: Final = (
    "pydicom.pixels.decoders.base",
    "pydicom.pixels.encoders.base",
    "pylibjpeg.utils",
)
#: the fields a record may carry besides its message (``extra=``), in the order written
ACCESS_FIELDS: Final = ("method", "route", "status", "duration_ms", "actor")
#: the servers' loggers: they write through the root handler (uvicorn configures none of its own
#: when started with ``log_config=None``)
_SERVER_LOGGERS: Final = ("uvicorn", "uvicorn.error")
#: uvicorn's access log: silenced, the app writes its own (:mod:`app.api.observe`). uvicorn logs
#: the whole request line there, query string and all (patient names, a token in a WADO-URI
#: URL), whenever the logger has a handler, its ancestors' included
_SERVER_ACCESS_LOGGER: Final = "uvicorn.access"

_request_id: ContextVar[str | None] = ContextVar("lightbox_request_id", default=None)


def bind_request_id(request_id: str) -> Token[str | None]:
    """Make ``request_id`` the id of every record logged in this context (a request's task and
    the threads it hands work to)."""
    return _request_id.set(request_id)


def reset_request_id(token: Token[str | None]) -> None:
    """Undo :func:`bind_request_id` (the request is over)."""
    _request_id.reset(token)


def current_request_id() -> str | None:
    """The id of the request this code runs for, if any."""
    return _request_id.get()


def _request_id_of(record: logging.LogRecord) -> str | None:
    given = record.__dict__.get("request_id")
    return given if isinstance(given, str) else _request_id.get()


class _RecordFactory:
    """Gives each record the id of the request it was logged for, when it is made (a record
    may be formatted later, elsewhere: a queue, a test's capture)."""

    def __init__(self, make: Any) -> None:
        self.make = make

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = self.make(*args, **kwargs)
        request_id = _request_id.get()
        if request_id is not None:
            record.request_id = request_id
        return record


def _install_record_factory() -> None:
    current = logging.getLogRecordFactory()
    if not isinstance(current, _RecordFactory):
        logging.setLogRecordFactory(_RecordFactory(current))


_second: list[Any] = [-1, ""]  # the last whole second formatted, and its text


def _utc(created: float) -> str:
    """A record's time in ISO 8601, UTC, to the millisecond (the second's text is kept: a busy
    server writes many lines a second).

    >>> _utc(1796630400.5)
    '2026-12-07T08:00:00.500Z'
    """
    second = int(created)
    cached = _second
    if cached[0] != second:
        cached[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        cached[0] = second
    return f"{cached[1]}.{int((created - second) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object per record (a line: JSON escapes the newlines of messages and
    tracebacks)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        request_id = _request_id_of(record)
        if request_id is not None:
            entry["request_id"] = request_id
        fields = record.__dict__
        for name in ACCESS_FIELDS:
            value = fields.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["traceback"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [request id]``, then the traceback, if any."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        request_id = _request_id_of(record)
        return f"{line} [{request_id}]" if request_id is not None else line


def wants_json(log_format: str, stream: TextIO | None = None) -> bool:
    """Whether ``log_format`` (``auto``, ``text``, ``json``) means JSON lines on ``stream``:
    ``auto`` is text on a terminal and JSON elsewhere.

    >>> wants_json("json"), wants_json("text")
    (True, False)
    """
    fmt = str(log_format).lower()
    if fmt not in ("auto", "text", "json"):
        raise ValueError(f"log format {log_format!r}: choose auto, text or json")
    if fmt != "auto":
        return fmt == "json"
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    return not (callable(isatty) and isatty())


def formatter_for(log_format: str, stream: TextIO | None = None) -> logging.Formatter:
    """The formatter ``log_format`` means on ``stream`` (:func:`wants_json`)."""
    return JsonFormatter() if wants_json(log_format, stream) else TextFormatter()


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The process's handler (a type of its own, so it is found and replaced, never doubled)."""


def configure_logging(
    level: str, log_format: str, *, stream: TextIO | None = None, force: bool = False
) -> None:
    """Write every record of the process at ``level`` and above to ``stream`` (standard error)
    in ``log_format``; the servers' loggers write through it too.

    Without ``force`` a process whose logging someone else set up (a test runner, an embedding
    application) keeps it: only the level of Lightbox's loggers is set. Calling it again
    replaces the handler it installed.
    """
    stream = stream if stream is not None else sys.stderr
    _install_record_factory()
    access = logging.getLogger(_SERVER_ACCESS_LOGGER)
    access.handlers.clear()
    access.propagate = False
    root = logging.getLogger()
    foreign = [h for h in root.handlers if not isinstance(h, _Handler)]
    if foreign and not force:
        logging.getLogger("app").setLevel(level.upper())
        logging.getLogger("lightbox").setLevel(level.upper())
        return
    for handler in list(root.handlers):
        if force or isinstance(handler, _Handler):
            root.removeHandler(handler)
    # no formatter of ours writes the process's multiprocessing name: not looked up per record
    logging.logMultiprocessing = False
    handler = _Handler(stream)
    handler.setFormatter(formatter_for(log_format, stream))
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _SERVER_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


class _PluginFailure(logging.Filter):
    """Demote a logged exception to a one-line DEBUG record (dropped unless DEBUG is on)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info is None or record.levelno < logging.ERROR:
            return True
        exc = record.exc_info[1]
        record.msg = "codec plugin failed: %s: %s"
        record.args = (type(exc).__name__, exc)
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


_FILTER: Final = _PluginFailure()


def quiet_codec_logs() -> None:
    """Install the filter on :data:`CODEC_LOGGERS` (idempotent)."""
    for name in CODEC_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
