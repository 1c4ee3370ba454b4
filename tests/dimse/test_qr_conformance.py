"""The Query/Retrieve part of the DIMSE conformance statement says what the code does."""

from app.config import Settings
from app.dimse.qr_conformance import QUERY_RETRIEVE_SECTIONS


def test_the_sections_name_the_sop_classes_keys_and_statuses() -> None:
    text = "\n".join(
        line for section in QUERY_RETRIEVE_SECTIONS for line in section(Settings(_env_file=None))
    )
    for uid in (
        "1.2.840.10008.5.1.4.1.2.1.1",
        "1.2.840.10008.5.1.4.1.2.2.2",
        "1.2.840.10008.5.1.4.1.2.2.3",
    ):
        assert f"`{uid}`" in text
    for needle in (
        "**PatientID** (unique)",
        "ModalitiesInStudy",
        "RequestAttributesSequence",
        "0xA801",
        "0xFF01",
        "65535",
    ):
        assert needle in text
