"""The Query/Retrieve part of the DIMSE conformance statement (PS3.2 style; DIMSE-07..13),
generated from the code: the SOP classes, the keys per level (the index columns of the QIDO
engine, :data:`app.dicom.query.KEYS`), the matching, the character sets, the sub-operations and
the statuses. ``app.dimse.conformance`` lists these sections after its own."""

from collections.abc import Callable
from typing import Final

from pydicom.uid import UID

from app.config import Settings
from app.dicom.attributes import Level
from app.dicom.dimse_query import SOP_CLASSES, UNIQUE_KEYS, Model, Service
from app.dicom.query import KEYS, keyword_of
from app.dimse.contexts import QUERY_RETRIEVE
from app.dimse.destinations import MAX_ATTEMPTS
from app.dimse.loop_association import MAX_IDENTIFIER_BYTES
from app.dimse.sender import MAX_CONTEXTS
from app.dimse.suboperations import US_MAX

__all__ = ["QUERY_RETRIEVE_SECTIONS", "query_retrieve_rows"]

_LEVEL_NAMES: Final = {
    Level.PATIENT: "PATIENT (Patient Root only)",
    Level.STUDY: "STUDY",
    Level.SERIES: "SERIES",
    Level.INSTANCE: "IMAGE",
}
#: the computed keys answered at each level, besides the indexed ones
_COMPUTED: Final = {
    Level.PATIENT: (
        "NumberOfPatientRelatedStudies",
        "NumberOfPatientRelatedSeries",
        "NumberOfPatientRelatedInstances",
    ),
    Level.STUDY: (),
    Level.SERIES: (),
    Level.INSTANCE: (),
}

FIND_STATUSES: Final = (
    ("0xFF00", "Pending", "a match, with the requested keys"),
    ("0xFF01", "Pending", "a match; some optional keys could not be matched or returned"),
    ("0x0000", "Success", "the last match was sent"),
    ("0xFE00", "Cancel", "after a C-CANCEL, before the next match"),
    ("0xA700", "Out of resources", "the index cannot be read now"),
    (
        "0xA900",
        "Identifier does not match SOP class",
        "no or an invalid QueryRetrieveLevel, a key of a lower level, a unique key of a "
        "level above missing or not a single value",
    ),
    ("0xC000", "Unable to process", "a value that cannot be matched (date, time, UID, list)"),
)

RETRIEVE_STATUSES: Final = (
    ("0xFF00", "Pending", "after every sub-operation, with the four counts"),
    ("0x0000", "Success", "every sub-operation succeeded (or there were none)"),
    ("0xB000", "Warning", "some failed or warned; the Failed SOP Instance UID List names them"),
    ("0xA702", "Refused: out of resources", "every sub-operation failed (listed)"),
    ("0xA701", "Refused: out of resources", "the matches cannot be counted (index unavailable)"),
    ("0xA801", "Refused: Move Destination unknown", "C-MOVE to an AE title not configured"),
    ("0xA900", "Identifier does not match SOP class", "as for C-FIND, or no unique key"),
    ("0xC000", "Unable to process", "a unique key that names nothing exactly (wildcard)"),
    ("0xFE00", "Cancel", "after a C-CANCEL, with the counts and Remaining"),
)


def _name(uid: str) -> str:
    name = UID(uid).name
    return "" if name == uid else name


def query_retrieve_rows() -> list[str]:
    """The Query/Retrieve SOP classes as rows of the SOP class table (8.2)."""
    rows = []
    for uid in QUERY_RETRIEVE:
        model, service = SOP_CLASSES[uid]
        section = "8.6" if service is Service.FIND else "8.7"
        rows.append(f"| {_name(uid) or f'{model} {service}'} | `{uid}` | SCP ({section}) |")
    return rows


def _keys(level: Level) -> str:
    indexed = [key.name for key in KEYS.values() if key.level is level]
    if level is Level.INSTANCE:
        indexed = [name for name in indexed if name != "SOPInstanceUID"]
    unique = keyword_of(UNIQUE_KEYS[level])
    return ", ".join([f"**{unique}** (unique)", *(n for n in indexed if n != unique)])


def _find(_settings: Settings) -> list[str]:
    lines = [
        "### 8.6 Query/Retrieve SCP: C-FIND",
        "",
        "| SOP class | UID | role |",
        "| --- | --- | --- |",
    ]
    for uid in QUERY_RETRIEVE:
        model, service = SOP_CLASSES[uid]
        if service is Service.FIND:
            lines.append(f"| {_name(uid) or f'{model} {service}'} | `{uid}` | SCP |")
    lines += [
        "",
        "Query/Retrieve contexts are accepted in `1.2.840.10008.1.2.1`, `1.2.840.10008.1.2` "
        "and `1.2.840.10008.1.2.2`. No extended negotiation is accepted: hierarchical search "
        "only (no relational search, no combined date-time matching, no fuzzy semantic "
        "matching of person names).",
        "",
        "A C-FIND runs the QIDO-RS matching engine (one implementation). Levels: "
        + ", ".join(_LEVEL_NAMES[level] for level in Model.PATIENT_ROOT.levels)
        + "; Study Root has no PATIENT level and its STUDY level holds the patient keys.",
        "",
        "- Every level above the query level must carry its unique key as a single value; a "
        "key of a level below the query level is refused (0xA900, the key named in the Error "
        "Comment and Offending Element). Keys of the levels above are returned, and matched.",
        "- Matching (PS3.4 §C.2.2.2): single value; universal (empty or `*`); wildcards `*` and "
        "`?` on AE, CS, LO, LT, PN, SH, ST, UC, UR, UT; DA and TM ranges (`a-b`, `a-`, `-b`, "
        "partial times); lists of UIDs, and of values on CS, SH, LO and AE keys (any of them); "
        "sequence matching in RequestAttributesSequence (ScheduledProcedureStepID, "
        "RequestedProcedureID). PN matches ignore case and accents; other values are "
        "case-sensitive.",
        "- Each match is a Pending response carrying exactly the keys asked for (empty when the "
        "object has no value), the unique keys of its level and those above, QueryRetrieveLevel,"
        " RetrieveAETitle (our AE title), InstanceAvailability `ONLINE` and "
        "SpecificCharacterSet. Keys are filled from the attributes the index keeps per level; a "
        "key that is neither matchable nor kept at the levels of the result is an optional key "
        "not supported (0xFF01): ignored for matching, returned empty.",
        "- Character sets: the identifier is decoded with its SpecificCharacterSet (code "
        "extensions, ISO 2022 included); a match goes out in the request's character set when "
        "every value of it can be encoded there, else in ISO_IR 192.",
        "- No limit on the number of matches: they are read from the index a page at a time. A "
        "C-CANCEL is honoured before the next match.",
        "- One operation at a time per association: a request sent while a C-FIND's matches are "
        "being sent (other than its C-CANCEL) is answered after its final response. An "
        f"identifier larger than {MAX_IDENTIFIER_BYTES >> 20} MiB aborts the association; so "
        "does a requestor that reads no "
        "response for the network timeout (`LIGHTBOX_DIMSE__NETWORK_TIMEOUT`), the search "
        "audited as given up.",
        "",
        "Matching keys with an index column, per level (any DICOM attribute may be asked for as "
        "a return key):",
        "",
        "| level | keys |",
        "| --- | --- |",
    ]
    for level in Model.PATIENT_ROOT.levels:
        keys = _keys(level)
        extra = ", ".join(_COMPUTED[level])
        lines.append(f"| {_LEVEL_NAMES[level]} | {keys}{', ' + extra if extra else ''} |")
    lines += ["", "| status | meaning | when |", "| --- | --- | --- |"]
    lines += [f"| {code} | {meaning} | {when} |" for code, meaning, when in FIND_STATUSES]
    lines.append("")
    return lines


def _retrieve(settings: Settings) -> list[str]:
    moves = [uid for uid in QUERY_RETRIEVE if SOP_CLASSES[uid][1] is not Service.FIND]
    lines = [
        "### 8.7 Query/Retrieve SCP: C-MOVE and C-GET",
        "",
        "| SOP class | UID | role |",
        "| --- | --- | --- |",
    ]
    for uid in moves:
        model, service = SOP_CLASSES[uid]
        lines.append(f"| {_name(uid) or f'{model} {service}'} | `{uid}` | SCP |")
    lines += [
        "",
        "- The identifier names what to send by unique keys at the retrieve level (a single "
        "value, or a list of UIDs); unique keys of the levels above, when given, restrict it; "
        "other keys are ignored. PATIENT level sends every study of the patient.",
        "- Both run the WADO-RS retrieve service. Each instance is one C-STORE sub-operation, "
        "its data set sent as stored when the peer accepted a presentation context for its SOP "
        "class in the stored transfer syntax; otherwise decoded or re-encoded to Explicit, "
        "else Implicit, VR Little Endian when a context takes one (the decoders of WADO-RS); "
        "otherwise it is a failed sub-operation.",
        "- C-MOVE: the Move Destination is looked up among the configured remote AEs "
        "(`LIGHTBOX_DIMSE__REMOTE_AES`; unknown: 0xA801). Lightbox opens one association to it "
        f"as `{settings.dimse.ae_title}` (over TLS when the AE is marked so), proposing per SOP "
        "class to be sent a context in Explicit and Implicit VR Little Endian and one per "
        f"stored transfer syntax (at most {MAX_CONTEXTS} contexts). Each C-STORE carries the "
        "Move Originator AE Title and Message ID. The C-MOVE is synchronous: Pending responses "
        "while the sub-operations run, the final status when the last one is done. When the "
        "destination refuses or drops the association, or does not answer within the DIMSE "
        "timeout, the sub-operation under way fails and the next opens a new association; after "
        f"{MAX_ATTEMPTS} attempts in a row without an instance delivered the destination is given"
        " up and the remaining sub-operations fail at once.",
        "- C-GET: the C-STOREs go on the requestor's association, on the storage contexts for "
        "which it took the SCP role (SCP/SCU Role Selection); an instance of a SOP class with no "
        "such context is a failed sub-operation.",
        "- No limit on the number of instances. The sub-operation counts are US values: each is "
        f"sent as itself up to {US_MAX} and as {US_MAX} above (meaning at least that many); the "
        "final status is exact and the Failed SOP Instance UID List names every failed instance "
        "(in an Explicit VR identifier, as many as a UI value holds).",
        "- A C-CANCEL is honoured between sub-operations.",
        "- Every C-FIND, C-MOVE and C-GET is audited: the calling AE title and address, the "
        "status, and per study touched the instances delivered.",
        "",
        "| status | meaning | when |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {code} | {meaning} | {when} |" for code, meaning, when in RETRIEVE_STATUSES]
    lines.append("")
    return lines


#: the Query/Retrieve sections of the DIMSE part, in order
QUERY_RETRIEVE_SECTIONS: list[Callable[[Settings], list[str]]] = [_find, _retrieve]
