"""The whole HTTP API against its OpenAPI document (openapi/openapi.json), with schemathesis.

Every operation gets requests drawn from its declared parameters and bodies, plus what the
document cannot declare and the parsers behind it read: Accept and Range headers, QIDO match
keys, and the UIDs of instances that exist (so retrieve, frames, rendering and delete reach past
the "404 unknown study"). The token carries every scope. No answer may be a 5xx, and nothing may
be logged at ERROR: a refusal is a 4xx with a reason, logged in one line.
"""

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from pydicom.uid import generate_uid
from requests.structures import CaseInsensitiveDict
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans

from app.main import create_app
from tests.auth.helpers import Tokens, auth_settings
from tests.factories import make_instance, multipart, stow_headers
from tests.fuzz.strategies import accept_text, range_text

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = schemathesis.openapi.from_path(ROOT / "openapi" / "openapi.json")
#: the request bodies the document declares: binary, sent as they are (multipart ones wrapped in
#: one part, below); schemathesis has no serializer of its own for them
schemathesis.serializer.alias(
    [
        "application/dicom",
        'multipart/related; type="application/dicom"',
        'multipart/related; type="application/dicom+json"',
        'multipart/related; type="application/dicom+xml"',
    ],
    "application/octet-stream",
)
BOUNDARY = "fuzz-boundary"
#: per operation: the suite's share of the time budget (``bench/run.py robustness fuzz``: more)
EXAMPLES = int(os.environ.get("LIGHTBOX_FUZZ_API_EXAMPLES", "10"))
#: the index back ends the test runs on: SQLite only in the suite (PostgreSQL doubles the time;
#: the index tests compare the two), both with ``bench/run.py robustness fuzz --databases ...``
DATABASES = os.environ.get("LIGHTBOX_FUZZ_API_DATABASES", "sqlite").split(",")


class Seeded:
    """The UIDs of the instances stored before the run: study, series, instance."""

    def __init__(self, uids: list[tuple[str, str, str]]) -> None:
        self.uids = uids


@pytest.fixture(scope="module")
def api(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[FastAPI, dict[str, str], Seeded]]:
    """The app with access control and audit on, two stored instances.

    schemathesis runs the app's lifespan (which opens the services) on its own event loop the
    first time it calls it, and keeps it running until :func:`shutdown_lifespans`.
    """
    settings_ = auth_settings(database_url, tmp_path_factory.mktemp("schemathesis") / "data")
    app = create_app(settings_)
    token = Tokens(settings_).headers()
    study, series = str(generate_uid()), str(generate_uid())
    sops = [str(generate_uid()) for _ in range(2)]
    raws = [
        make_instance(StudyInstanceUID=study, SeriesInstanceUID=series, SOPInstanceUID=sop)
        for sop in sops
    ]
    store = SCHEMA["/dicom-web/studies"]["POST"].Case(
        body=multipart(raws),
        media_type='multipart/related; type="application/dicom"',
        headers=stow_headers(),
    )
    try:
        stored = store.call(app=app, headers=token)
        assert stored.status_code == 200, stored.text
        yield app, token, Seeded([(study, series, sop) for sop in sops])
    finally:
        shutdown_lifespans()  # closes the services before the database is dropped


def _header(text: str) -> str:
    """``text`` as a header value can be sent: ISO 8859-1, no control characters, trimmed."""
    return "".join(c for c in text if " " <= c <= "\xff" and c != "\x7f").strip()


#: what number parsers meet: ASCII and other digits, lists, signs, and more digits than int() reads
numbers = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40).map(str),
    st.sampled_from(["0", "1,2", "2,1,1", "²", "١٢", "+1", "1e3", "0x10", "9" * 5000, ""]),
    st.text(alphabet="0123456789,²-+. ", max_size=12),
)
_extras = st.fixed_dictionaries(
    {},
    optional={
        "accept": accept_text.map(_header),
        "range": range_text.map(_header),
        "existing": st.integers(min_value=0, max_value=1),
        "frames": numbers,
        "numbers": st.lists(
            st.tuples(
                st.sampled_from(
                    [
                        *("viewport", "quality", "window", "frameNumber", "rows", "columns"),
                        *("limit", "offset", "InstanceNumber", "Rows", "NumberOfFrames"),
                    ]
                ),
                numbers,
            ),
            max_size=2,
        ),
        "query": st.lists(
            st.tuples(
                st.sampled_from(["PatientName", "StudyDate", "00100020", "limit", "includefield"])
                | st.text(max_size=8),
                st.text(max_size=12),
            ),
            max_size=3,
        ),
    },
)


def _add_extras(case: Case[Any], extras: dict[str, Any], seeded: Seeded) -> None:
    """Put into ``case`` what was drawn beyond the document: headers, match keys, known UIDs."""
    if "existing" in extras and case.path_parameters:
        study, series, sop = seeded.uids[extras["existing"]]
        known = {"study": study, "series": series, "instance": sop}
        case.path_parameters = {
            name: known.get(name, value) for name, value in case.path_parameters.items()
        }
    if "frames" in extras and case.path_parameters and "frames" in case.path_parameters:
        case.path_parameters = {**case.path_parameters, "frames": extras["frames"]}
    headers: CaseInsensitiveDict[Any] = CaseInsensitiveDict(case.headers or {})
    for name in ("accept", "range"):
        if name in extras:
            headers[name.title()] = extras[name]
    if case.media_type is not None and case.media_type.startswith("multipart/"):
        # the drawn bytes as the one part of a well-framed body, so the part reader sees them
        headers["Content-Type"] = f"{case.media_type}; boundary={BOUNDARY}"
        payload = case.body if isinstance(case.body, bytes) else b""
        delimiter = b"--" + BOUNDARY.encode()
        head = b"\r\nContent-Type: application/dicom\r\n\r\n"
        case.body = b"".join((delimiter, head, payload, b"\r\n", delimiter, b"--\r\n"))
    case.headers = headers
    query: dict[str, Any] = dict(case.query or {})
    for name, value in [*extras.get("query", []), *extras.get("numbers", [])]:
        query.setdefault(name, value)
    case.query = query


@pytest.mark.parametrize("database_url", DATABASES, indirect=True)
@SCHEMA.parametrize()
@SCHEMA.given(extras=_extras)
@settings(max_examples=EXAMPLES, suppress_health_check=list(HealthCheck))
def test_no_operation_answers_5xx_or_logs_an_error(
    case: Case[Any],
    extras: dict[str, Any],
    api: tuple[FastAPI, dict[str, str], Seeded],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app, token, seeded = api
    _add_extras(case, extras, seeded)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        response = case.call(app=app, headers=token)
    case.validate_response(response, checks=[not_a_server_error])
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], (response.status_code, errors)
