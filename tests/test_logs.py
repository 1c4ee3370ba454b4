"""Log formats (:mod:`app.logs`): JSON lines with the request's id and fields, text on a
terminal, one handler per process."""

import io
import json
import logging
import os
import sys

import pytest

from app.logs import (
    JsonFormatter,
    TextFormatter,
    bind_request_id,
    configure_logging,
    formatter_for,
    reset_request_id,
    wants_json,
)


def _record(msg: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("app.test", logging.INFO, __file__, 1, msg, args or ("you",), None)
    record.__dict__.update(extra)
    return record


def test_json_line_carries_the_fields() -> None:
    record = _record(method="GET", route="/dicom-web/studies", status=200, duration_ms=1.5)
    token = bind_request_id("abc-1")
    try:
        line = JsonFormatter().format(record)
    finally:
        reset_request_id(token)
    entry = json.loads(line)
    assert entry["message"] == "hello you"
    assert entry["level"] == "INFO"
    assert entry["logger"] == "app.test"
    assert entry["request_id"] == "abc-1"
    assert entry["pid"] == os.getpid()
    assert (entry["method"], entry["route"], entry["status"], entry["duration_ms"]) == (
        "GET",
        "/dicom-web/studies",
        200,
        1.5,
    )
    assert entry["time"].endswith("Z")
    assert "T" in entry["time"]
    assert "actor" not in entry  # a field that is not there is left out, not null


def test_json_request_id_only_inside_its_context() -> None:
    assert "request_id" not in json.loads(JsonFormatter().format(_record()))
    # a record may name its request itself (the access log does)
    assert json.loads(JsonFormatter().format(_record(request_id="r-9")))["request_id"] == "r-9"


def test_a_traceback_is_one_field_of_one_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord(
            "app.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["traceback"].startswith("Traceback (most recent call last)")
    assert "RuntimeError: boom" in entry["traceback"]
    assert line.count("Traceback") == 1


def test_text_line_names_the_request() -> None:
    token = bind_request_id("abc-2")
    try:
        line = TextFormatter().format(_record())
    finally:
        reset_request_id(token)
    assert line.endswith("INFO app.test: hello you [abc-2]")


def test_auto_is_text_on_a_terminal_and_json_elsewhere() -> None:
    controller, terminal = os.openpty()
    try:
        with os.fdopen(terminal, "w", closefd=False) as tty:
            assert tty.isatty()
            assert wants_json("auto", tty) is False
            assert isinstance(formatter_for("auto", tty), TextFormatter)
            assert wants_json("json", tty) is True
    finally:
        os.close(controller)
        os.close(terminal)
    pipe = io.StringIO()
    assert wants_json("auto", pipe) is True
    assert wants_json("text", pipe) is False
    with pytest.raises(ValueError, match="auto, text or json"):
        wants_json("xml", pipe)


def test_configure_logging_installs_one_handler() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    try:
        configure_logging("info", "json", stream=stream, force=True)
        configure_logging("info", "json", stream=stream)  # again: replaced, not doubled
        assert len(root.handlers) == 1
        logging.getLogger("uvicorn.error").info("server says %s", "hi")
        logging.getLogger("app.test").debug("not at info")
        lines = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert [(e["logger"], e["message"]) for e in lines] == [("uvicorn.error", "server says hi")]
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)


def test_configure_logging_keeps_a_foreign_setup() -> None:
    """A test runner or an embedding application set logging up: only our levels are set."""
    root = logging.getLogger()
    before = list(root.handlers)
    assert before  # pytest's own handlers
    configure_logging("info", "json")
    assert root.handlers == before
    assert logging.getLogger("app").level == logging.INFO
