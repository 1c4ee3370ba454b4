"""Audit events as DICOM audit messages (PS3.15 Annex A.5, the RFC 3881 schema), for export.

One ``<AuditMessage>`` per event: EventIdentification with the DCM event code of the action,
the requesting user and network address as ActiveParticipant, and the study and patient touched as
ParticipantObjectIdentification.
"""

from typing import Any, Final
from xml.etree import ElementTree as ET

__all__ = ["audit_message"]

#: action -> (EventID code in DCM, meaning, EventActionCode) (PS3.15 A.5.3, PS3.16 CID 400-403)
EVENTS: Final[dict[str, tuple[str, str, str]]] = {
    "store": ("110107", "Import", "C"),
    "search": ("110112", "Query", "E"),
    "retrieve": ("110103", "DICOM Instances Accessed", "R"),
    "metadata": ("110103", "DICOM Instances Accessed", "R"),
    "frames": ("110103", "DICOM Instances Accessed", "R"),
    "render": ("110103", "DICOM Instances Accessed", "R"),
    "bulkdata": ("110103", "DICOM Instances Accessed", "R"),
    "delete": ("110105", "DICOM Study Deleted", "D"),
    "login-failure": ("110114", "User Authentication", "E"),
    "token-issued": ("110113", "Security Alert", "E"),
    "audit-query": ("110101", "Audit Log Used", "R"),
}
_DEFAULT_EVENT: Final = ("110100", "Application Activity", "E")


def _outcome(row: dict[str, Any]) -> str:
    """EventOutcomeIndicator: 0 success, 4 minor failure (refused, 4xx), 8 serious failure."""
    if row["outcome"] == "success":
        return "0"
    status = row.get("status")
    return "8" if isinstance(status, int) and status >= 500 else "4"


def audit_message(row: dict[str, Any], *, source_id: str = "lightbox") -> str:
    """One exported audit row as a PS3.15 A.5 ``AuditMessage`` element (one line of XML).

    >>> xml = audit_message({"action": "retrieve", "outcome": "success", "status": 200,
    ...     "time": "2026-12-01T10:00:00Z", "actor": "dr", "source": "10.0.0.1",
    ...     "study_uid": "1.2.3", "patient_id": "P1", "client_id": None, "count": 1})
    >>> 'csd-code="110103"' in xml and 'ParticipantObjectID="P1"' in xml
    True
    """
    code, meaning, action_code = EVENTS.get(row["action"], _DEFAULT_EVENT)
    message = ET.Element("AuditMessage")
    event = ET.SubElement(
        message,
        "EventIdentification",
        EventActionCode=action_code,
        EventDateTime=str(row["time"]),
        EventOutcomeIndicator=_outcome(row),
    )
    ET.SubElement(
        event, "EventID", {"csd-code": code, "codeSystemName": "DCM"}, originalText=meaning
    )
    participant = {"UserID": row.get("actor") or "unknown", "UserIsRequestor": "true"}
    if row.get("client_id"):
        participant["AlternativeUserID"] = row["client_id"]
    if row.get("source"):
        participant |= {"NetworkAccessPointID": row["source"], "NetworkAccessPointTypeCode": "2"}
    ET.SubElement(message, "ActiveParticipant", participant)
    ET.SubElement(message, "AuditSourceIdentification", AuditSourceID=source_id)
    if row.get("study_uid"):
        study = ET.SubElement(
            message,
            "ParticipantObjectIdentification",
            ParticipantObjectID=row["study_uid"],
            ParticipantObjectTypeCode="2",
            ParticipantObjectTypeCodeRole="3",
        )
        ET.SubElement(
            study,
            "ParticipantObjectIDTypeCode",
            {"csd-code": "110180", "codeSystemName": "DCM"},
            originalText="Study Instance UID",
        )
    if row.get("patient_id"):
        patient = ET.SubElement(
            message,
            "ParticipantObjectIdentification",
            ParticipantObjectID=row["patient_id"],
            ParticipantObjectTypeCode="1",
            ParticipantObjectTypeCodeRole="1",
        )
        ET.SubElement(
            patient,
            "ParticipantObjectIDTypeCode",
            {"csd-code": "2", "codeSystemName": "RFC-3881"},
            originalText="Patient Number",
        )
    return ET.tostring(message, encoding="unicode")
