"""The DIMSE part of the conformance statement (PS3.2 style, DIMSE-01..06, 14), generated from
the code and the default settings; ``lightbox conformance`` appends it to the DICOMweb part.

Each section is a function returning its lines; the Query/Retrieve ones (8.6, 8.7) come from
:mod:`app.dimse.qr_conformance`, the one on pulling from another archive (8.8) from
:mod:`app.dimse.pull_conformance`.
"""

from collections.abc import Callable
from typing import Final

from pydicom.uid import UID

from app.config import Settings
from app.dicom.filemeta import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from app.dimse.contexts import (
    COMMITMENT,
    RETIRED_STORAGE,
    STORAGE_TRANSFER_SYNTAXES,
    VERIFICATION,
    storage_sop_classes,
)
from app.dimse.pull_conformance import PULL_SECTIONS
from app.dimse.qr_conformance import QUERY_RETRIEVE_SECTIONS, query_retrieve_rows

__all__ = ["SECTIONS", "dimse_conformance_markdown"]


def _name(uid: str) -> str:
    name = UID(uid).name
    return "" if name == uid else name


def _application_entity(settings: Settings) -> list[str]:
    dimse = settings.dimse
    return [
        "### 8.1 Application entity and associations",
        "",
        f"- AE title `{dimse.ae_title}` (`LIGHTBOX_DIMSE__AE_TITLE`), port {dimse.port}, bound "
        f"to {dimse.host} by default; one listener per server (`lightbox serve` runs it beside "
        "HTTP, `lightbox dimse` alone).",
        f"- Implementation Class UID `{IMPLEMENTATION_CLASS_UID}`, Implementation Version Name "
        f"`{IMPLEMENTATION_VERSION_NAME}`.",
        f"- Maximum PDU received: {dimse.max_pdu} bytes; ACSE timeout {dimse.acse_timeout:g} s, "
        f"DIMSE timeout {dimse.dimse_timeout:g} s, network (idle) timeout "
        f"{dimse.network_timeout:g} s; at most {dimse.max_associations} concurrent "
        "associations (more: A-ASSOCIATE-RJ transient, local limit exceeded).",
        "- Lightbox accepts associations; it requests them to send a Storage Commitment report "
        "back on a new association, to send a C-MOVE's instances to its destination (8.7), and "
        "to pull from another archive (8.8).",
        "- Any calling AE is accepted unless an allow-list is set (`LIGHTBOX_DIMSE__ALLOWED_PEERS`:"
        " calling AE titles and/or addresses); a caller off the list gets A-ASSOCIATE-RJ "
        "rejected-permanent, service user, calling AE title not recognized. The called AE title "
        "is not checked. TLS (PS3.15 B.1, TLS 1.2 or later), with client certificates required "
        "when a CA is configured, is optional.",
        "- A proposed presentation context whose abstract syntax is not supported is rejected "
        "(result 3) without rejecting the association; of several transfer syntaxes proposed in "
        "one context, the first in the order of 8.3 is accepted.",
        "- Asynchronous operations are not negotiated (one operation at a time per association)."
        " SCP/SCU role selection is accepted for the storage SOP classes (a C-GET requestor's "
        "storage SCP role).",
        "- Every association (accepted, rejected, aborted) and every operation is written to the "
        "audit trail, with the calling AE title as the actor and the caller's address as the "
        "source.",
        "",
    ]


def _sop_classes(settings: Settings) -> list[str]:
    storage = storage_sop_classes(tuple(settings.dimse.private_sop_classes))
    lines = [
        "### 8.2 SOP classes",
        "",
        "| SOP class | UID | role |",
        "| --- | --- | --- |",
        f"| Verification | `{VERIFICATION}` | SCP |",
        f"| Storage Commitment Push Model | `{COMMITMENT}` | SCP |",
        *query_retrieve_rows(),
    ]
    private = set(settings.dimse.private_sop_classes)
    for uid in storage:
        name = _name(uid)
        if uid in private:
            name = name or "Private storage (configured)"
        elif not name:
            name = "Storage SOP class (PS3.6 Table A-1)"  # newer than pydicom's dictionary
        if uid in RETIRED_STORAGE and "(Retired)" not in name:
            name += " (retired)"
        lines.append(f"| {name} | `{uid}` | SCP |")
    lines += [
        "",
        f"{len(storage)} storage SOP classes; private ones are added with "
        "`LIGHTBOX_DIMSE__PRIVATE_SOP_CLASSES`, and `LIGHTBOX_SOP_CLASS_ALLOW_LIST` (shared "
        "with STOW-RS) restricts what is stored (0x0122 otherwise).",
        "",
    ]
    return lines


def _transfer_syntaxes(_settings: Settings) -> list[str]:
    lines = [
        "### 8.3 Transfer syntaxes",
        "",
        "Storage contexts, in order of preference (a data set is stored in the syntax it was "
        "received in, byte for byte, behind a File Meta naming it):",
        "",
    ]
    lines += [f"- `{uid}` {_name(uid)}".rstrip() for uid in STORAGE_TRANSFER_SYNTAXES]
    lines += [
        "",
        "Verification and Storage Commitment: `1.2.840.10008.1.2.1`, `1.2.840.10008.1.2` "
        "(and `1.2.840.10008.1.2.2` for Verification).",
        "",
    ]
    return lines


#: C-STORE response statuses (PS3.4 Table B.2-1, PS3.7 Annex C) and when each is sent
STORE_STATUSES: Final = (
    ("0x0000", "Success", "stored and committed (the answer comes only after the commit)"),
    (
        "0xB000",
        "Warning: coercion of data elements",
        "stored, replacing another object under the UID (`LIGHTBOX_DUPLICATE_POLICY=overwrite`)"
        " or under a study held for another PatientID (`LIGHTBOX_PATIENT_CONFLICT=accept`)",
    ),
    ("0x0111", "Duplicate SOP instance", "another object under this UID is stored (`reject`)"),
    (
        "0x0110",
        "Processing failure",
        "the study is held under another PatientID, or the series or instance under another "
        "study or series",
    ),
    ("0x0122", "SOP class not supported", "the SOP class is not on the allow-list"),
    (
        "0xA700",
        "Out of resources",
        "the index or the object store failed, or the instance exceeds the size limit; nothing "
        "is stored",
    ),
    (
        "0xA900",
        "Data set does not match SOP class",
        "the data set's SOP Class or Instance UID differs from the command's Affected ones",
    ),
    (
        "0xC000",
        "Cannot understand",
        "truncated or unreadable data set, missing or invalid UIDs (PS3.5 §9.1)",
    ),
    ("0xC122", "Cannot understand", "a transfer syntax Lightbox cannot read"),
)


def _storage(settings: Settings) -> list[str]:
    lines = [
        "### 8.4 Storage SCP (C-STORE)",
        "",
        "A C-STORE runs the STOW-RS ingest path: same duplicate and patient-conflict policies, "
        "same size limit (a data set growing past "
        f"{settings.limits.max_instance_bytes} bytes aborts the association), same audit. "
        "C-STOREs of concurrent associations share index transactions (group commit). A "
        "failure carries an Error Comment (0000,0902).",
        "",
        "| status | meaning | when |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {code} | {meaning} | {when} |" for code, meaning, when in STORE_STATUSES]
    lines.append("")
    return lines


def _commitment(_settings: Settings) -> list[str]:
    return [
        "### 8.5 Storage Commitment Push Model SCP",
        "",
        "- N-ACTION (Action Type 1) on `1.2.840.10008.1.20.1.1` is answered 0x0000 at once; "
        "0x0123 for another action type, 0x0112 for another SOP instance, 0x0120 without "
        "Referenced SOP Sequence, 0x0115 for a missing or invalid Transaction UID.",
        "- Each referenced instance is committed only when the index holds it under the SOP "
        "class named and its blob, read back, has the SHA-256 recorded when it was stored.",
        "- The N-EVENT-REPORT (Event Type 1: all committed; 2: some failed) goes on the same "
        "association when the requester keeps it open, else on a new association to the address "
        "configured for its AE title (remote AEs), proposing the SCP role (role selection).",
        "- Failure Reasons: 0x0112 not held; 0x0119 held under another SOP class; 0x0110 the "
        "stored bytes no longer match their hash (or the blob is missing); 0x0213 the index or "
        "the object store cannot answer now.",
        "",
    ]


#: the sections of the DIMSE part, in order
SECTIONS: list[Callable[[Settings], list[str]]] = [
    _application_entity,
    _sop_classes,
    _transfer_syntaxes,
    _storage,
    _commitment,
    *QUERY_RETRIEVE_SECTIONS,
    *PULL_SECTIONS,
]


def dimse_conformance_markdown(settings: Settings) -> str:
    """The DIMSE part of ``docs/conformance.md``."""
    lines = ["", "## 8. DIMSE (PS3.7 message exchange, PS3.4 service classes)", ""]
    for section in SECTIONS:
        lines += section(settings)
    return "\n".join(lines)
