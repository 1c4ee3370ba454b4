"""The scan of the run's logs (tests/log_hygiene.py) finds what it must, and only that."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.log_hygiene import ROOT, Scanner, jwt_like, patient_names

JWT = (
    "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0."
    "eyJzdWIiOiJlMmUiLCJzY29wZSI6InJlYWQifQ."
    "MEUCIQDx3vY1kq2c9Zt0aQ0Jf8Jm6pQm4nJ0n9f7kzq1w2m3"
)


def test_the_corpus_names_are_known() -> None:
    names = patient_names()
    assert "Doe^Archibald" in names  # pydicom's CT_small.dcm
    assert "Doe^Jane" in names  # tests/factories.py
    assert "Anonymized" not in names  # not a person's name: never looked for
    assert not any(n.isascii() and "^" not in n for n in names)


def test_a_name_is_found_in_any_of_its_forms() -> None:
    scanner = Scanner(["Doe^Archibald", "Buc^Jérôme"])
    for text in (
        "GET /dicom-web/studies?PatientName=Doe^Archibald",
        "GET /dicom-web/studies?PatientName=Doe%5EArchibald",
        '"PatientName": "DOE^ARCHIBALD"',
        "name Doe Archibald",
        "normalised BUC^JEROME",
    ):
        scanner.scan(text, "test")
    assert len(scanner.found) == 5


def test_tokens_are_found_and_route_templates_pass() -> None:
    assert jwt_like(f"GET /wado?requestType=WADO&access_token={JWT}") == [JWT]
    scanner = Scanner(["Doe^Archibald"])
    scanner.scan(f"Authorization: Bearer {JWT}", "test")
    scanner.scan("GET /dicom-web/studies/{study}/series 200 1.2 ms [a1b2-3]", "test")
    scanner.scan('{"route": "/dicom-web/studies", "actor": "e2e", "status": 204}', "test")
    assert len(scanner.found) == 1
    assert "a JWT" in scanner.found[0]


LEAKY_RUN = """
import logging


def test_quiet() -> None:
    logging.getLogger("app.test").info("stored 1 instance")


def test_leaks() -> None:
    logging.getLogger("app.test").warning("stored Doe^Jane")
"""


def _inner_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest on a small test file with the plugin loaded, in a child process."""
    (tmp_path / "test_inner.py").write_text(LEAKY_RUN, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    plugins = ["-p", "tests.log_hygiene", "-p", "no:cacheprovider"]
    return subprocess.run(
        [sys.executable, "-m", "pytest", *plugins, *args, "test_inner.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    "mode", [["-p", "no:xdist"], ["-n", "2"]], ids=["one-process", "xdist-workers"]
)
def test_a_leaked_name_fails_the_run(tmp_path: Path, mode: list[str]) -> None:
    """Run alone or spread over xdist workers (whose records the controller gets), a name in
    a log record fails the run, although every test passed."""
    done = _inner_run(tmp_path, *mode)
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout + done.stderr
    assert "2 passed" in done.stdout
    assert "patient names or tokens in the logs" in done.stdout
    # the leaking record is what is reported (the quiet test's is not)
    assert "stored Doe^Jane" in done.stdout
    assert "stored 1 instance" not in done.stdout
