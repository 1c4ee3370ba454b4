"""No patient name and no token in the logs of the whole test run (issue 23, point 10).

A pytest plugin (``tests/conftest.py`` loads it): from the start of the session it keeps every
log record of the process, formatted as the server would write it (:class:`~app.logs.JsonFormatter`:
message, fields and traceback), and the log file of every server process the end-to-end tests
start (:func:`watch_file`, called by ``tests/e2e/server.py``). At the end of the session it
looks through all of it for the patient names the tests store (the corpus's, and those the
test code writes into data sets) and for anything shaped like a JWT; a match fails the run,
printing where it was found. A server's log is read when the server stops (other test runs on
the machine may prune old temporary directories before this session ends).

Lightbox's own loggers are set to INFO for the session (as a server runs), so the access log and
the refusals are looked at, not only warnings. The records of HTTP client libraries are left
out: they are the tests' clients logging the URLs the tests asked for, not the server.

Under pytest-xdist (``make test`` runs ``-n``) each worker process keeps and scans its own
records and servers' logs; at its end it hands what it found to the controller
(``workeroutput``), which reports the findings of all workers and fails the run.
"""

import logging
import re
import unicodedata
import warnings
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, quote_plus

import pytest

from app.logs import JsonFormatter

__all__ = ["Scanner", "collect_file", "jwt_like", "patient_names"]

ROOT: Final = Path(__file__).resolve().parent.parent
#: three base64url parts, the first two JSON objects ("eyJ" is '{"' encoded)
JWT: Final = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
#: the tests' HTTP clients: they log the URLs the tests request, query strings included
CLIENT_LOGGERS: Final = ("httpx", "httpcore", "urllib3", "dicomweb_client", "requests")
#: records kept before they are looked through (then dropped)
_BATCH: Final = 5000
_ASSIGNED: Final = re.compile(r"""PatientName\s*=\s*(?:"([^"\n]+)"|'([^'\n]+)')""")


def _is_name(value: str) -> bool:
    """Whether a PatientName value is a person's name worth looking for: with a component
    separator or letters beyond ASCII (not an ID used as a name, "Anonymous", ...), and at least
    four letters."""
    letters = sum(c.isalpha() for c in value)
    return letters >= 4 and ("^" in value or any(ord(c) > 127 for c in value))


def _variants(name: str) -> Iterator[str]:
    """How a name may appear in a log: as stored, with spaces for carets, folded (QIDO's
    normalised form), percent-encoded (a query string)."""
    yield name
    yield name.replace("^", " ").strip()
    folded = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    yield folded
    yield quote(name, safe="")
    yield quote_plus(name, safe="")


@cache
def patient_names() -> tuple[str, ...]:
    """The patient names of the test data: the corpus's files and the tests' own data sets."""
    import pydicom

    from tests.corpus import corpus

    values: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in corpus():
            try:
                ds = pydicom.dcmread(
                    path,
                    stop_before_pixels=True,
                    specific_tags=["PatientName", "SpecificCharacterSet"],
                )
                value = ds.get("PatientName")
            except Exception:  # a refused file of the corpus: it holds no name to look for
                continue
            if value:
                values.add(str(value))
    for source in (ROOT / "tests").rglob("*.py"):
        for match in _ASSIGNED.finditer(source.read_text(encoding="utf-8")):
            values.add(match.group(1) or match.group(2))
    names: set[str] = set()
    for value in values:
        for group in (value, *value.split("=")):
            group = group.strip("^ ")
            if _is_name(group):
                names.add(group)
    return tuple(sorted(names))


def jwt_like(text: str) -> list[str]:
    """The JWT-shaped strings in ``text``."""
    return JWT.findall(text)


class Scanner:
    """Looks through text for the given names (any case, any of their variants) and tokens."""

    def __init__(self, names: Iterable[str]) -> None:
        variants = {v for name in names for v in _variants(name) if len(v.strip()) >= 4}
        # longest first, so a name is reported whole rather than by a shorter variant
        alternatives = sorted(variants, key=len, reverse=True)
        self._names = (
            re.compile("|".join(re.escape(v) for v in alternatives), re.IGNORECASE)
            if alternatives
            else None
        )
        self.found: list[str] = []

    def scan(self, text: str, where: str) -> None:
        """Note every name and token ``text`` holds (``where``: whence it came)."""
        hits = self._names.findall(text) if self._names is not None else []
        hits += [f"a JWT ({token[:12]}...)" for token in jwt_like(text)]
        if hits:
            excerpt = text if len(text) <= 300 else text[:300] + "..."
            self.found.append(f"{where}: {sorted(set(hits))} in {excerpt!r}")


class _Capture(logging.Handler):
    """Keeps every record of the session, formatted, for the scan."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.setFormatter(JsonFormatter())
        self.pending: list[str] = []
        self.scanner: Scanner | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(CLIENT_LOGGERS):
            return
        try:
            self.pending.append(self.format(record))
        except Exception:  # a record that cannot be formatted is the logging test's business
            return
        if len(self.pending) >= _BATCH:
            self.flush_pending()

    def flush_pending(self) -> None:
        if not self.pending:
            return
        if self.scanner is None:
            self.scanner = Scanner(patient_names())
        for line in self.pending:
            self.scanner.scan(line, "log record")
        self.pending.clear()


_capture = _Capture()
_LEVELS: Final = {"app": logging.INFO, "lightbox": logging.INFO}


def collect_file(path: Path) -> None:
    """Keep the lines of ``path`` (a server's log, once the server stopped) for the scan."""
    if not path.exists():
        return
    text = path.read_text(encoding="utf-8", errors="replace")
    _capture.pending += [f"{path.name}: {line}" for line in text.splitlines()]
    if len(_capture.pending) >= _BATCH:
        _capture.flush_pending()


def pytest_configure() -> None:
    logging.getLogger().addHandler(_capture)
    for name, level in _LEVELS.items():
        logging.getLogger(name).setLevel(level)


#: the findings the workers of a pytest-xdist run handed to this (the controller) process
_from_workers: list[str] = []
_WORKER_KEY: Final = "log_hygiene_found"


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:  # noqa: ARG001 (the hook's signature)
    """The controller of an xdist run: keep what a finished worker found in its logs."""
    output = getattr(node, "workeroutput", None) or {}
    _from_workers.extend(output.get(_WORKER_KEY, ()))


def pytest_sessionfinish(session: pytest.Session) -> None:
    logging.getLogger().removeHandler(_capture)
    _capture.flush_pending()
    found = [*(_capture.scanner.found if _capture.scanner is not None else []), *_from_workers]
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        # an xdist worker: its report would not be shown and its exit status is not the run's;
        # the controller reports and fails (this runs before xdist sends the worker's output)
        workeroutput[_WORKER_KEY] = found
        return
    if not found:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_sep(
            "=", "patient names or tokens in the logs (issue 23, point 10)", red=True
        )
        for line in found[:50]:
            reporter.write_line(line)
        if len(found) > 50:
            reporter.write_line(f"... and {len(found) - 50} more")
        reporter.write_line("the run fails: log the route template and the request id instead")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
