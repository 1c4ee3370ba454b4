"""The scan of the run's logs (tests/log_hygiene.py) finds what it must, and only that."""

from tests.log_hygiene import Scanner, jwt_like, patient_names

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
