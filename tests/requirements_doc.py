"""docs/requirements.md: the requirement ids that code, tests and commits cite (STOW-09 ...).

Each id is one line of the project's DICOMweb checklist, which lives outside the repository; this
module keeps what a reader of the repository needs of it: what the id asks (in short), the section
of the DICOM standard behind it, and, for the ids that no line of code names, where they are
implemented and which tests show them. The rest is found in the code: every module of ``app/``
and every test of ``tests/`` that cites an id (``STOW-09``, or a list such as ``FRM-01/06`` or
``META-01..05``) is listed under it, the test by name when the citation is inside it.

    python -m tests.requirements_doc        # rewrites docs/requirements.md

``tests/test_requirements_doc.py`` fails when the file is stale, when the code cites an id that is
not listed here, or when a module or test named here does not exist.
"""

import ast
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "requirements.md"
PREFIXES = [
    "GEN",
    "RES",
    "NEG",
    "STOW",
    "QIDO",
    "WADO",
    "META",
    "JSON",
    "BULK",
    "FRM",
    "REND",
    "THUMB",
    "URI",
    "DEL",
    "CAP",
    "CS",
    "DIMSE",
    "TEST",
]
#: an id, possibly followed by more numbers of the same prefix: ``FRM-01/06``, ``META-01..05``
CITATION = re.compile(rf"\b({'|'.join(PREFIXES)})-(\d{{2}})((?:(?:/|\.\.|…)\d{{2}})*)(?!\d)")
#: files that name every id by construction, not because they implement or test one
NOT_CITATIONS = frozenset({"tests/requirements_doc.py", "tests/test_requirements_doc.py"})


@dataclass(frozen=True)
class Requirement:
    """One checklist line, in short."""

    id: str
    text: str
    #: the section of the standard (PS3.18 unless another part is named)
    section: str
    #: empty: "yes" when a module implements it; otherwise what is (not) done
    status: str = ""
    #: where the checklist and the standard differ (the standard wins), or other context
    note: str = ""
    #: modules implementing it that do not cite the id
    modules: tuple[str, ...] = ()
    #: tests showing it that do not cite the id: ``path::function``
    tests: tuple[str, ...] = ()


R = Requirement
NOT_YET = "not yet implemented"

GROUPS: list[tuple[str, list[Requirement]]] = [
    (
        "1. General HTTP behaviour (GEN)",
        [
            R(
                "GEN-01",
                "Configurable service root and public base URL; every absolute URL built from it; "
                "X-Forwarded-* honoured only from trusted proxies",
                "§8.2",
            ),
            R(
                "GEN-02",
                "UID path segments checked: malformed is 400, well-formed but unknown is 404",
                "PS3.5 §9.1",
            ),
            R(
                "GEN-03",
                "Unsupported query parameters ignored; a supported one with a bad value is 400",
                "§8.3, §8.3.1",
                tests=("tests/api/test_rendered.py::test_thumbnails",),
            ),
            R("GEN-04", "Wrong method on a known path: 405 with Allow; unknown path: 404", "§8.5"),
            R(
                "GEN-05",
                "Errors carry a short status report (problem JSON), never a dataset or PHI",
                "§8.6.3",
                tests=(
                    "tests/api/test_wado.py::test_unknown_resources_are_404",
                    "tests/api/test_stow.py::test_unsupported_media_type",
                ),
            ),
            R(
                "GEN-06",
                "Bearer tokens: 401 with WWW-Authenticate, 403 for a missing scope, 404 instead "
                "by configuration",
                "§8.5; RFC 6750",
            ),
            R(
                "GEN-07",
                "The HTTP status vocabulary of Table 8.5-1, 410 for tombstoned resources",
                "§8.5, Table 8.5-1",
                note="501 is not used: an unsupported SOP class fails its instance with 0x0122",
                modules=("app/errors.py", "app/api/errors.py"),
                tests=(
                    "tests/api/test_stow.py::test_mixed_good_and_bad_gives_202",
                    "tests/api/test_stow.py::test_request_over_the_cap",
                    "tests/api/test_wado.py::test_not_acceptable",
                    "tests/api/test_delete.py::test_delete_series_drops_its_modality_and_answers_410",
                ),
            ),
            R(
                "GEN-08",
                "Large bodies streamed; Content-Length when known; gzip of JSON when accepted",
                "§8.1.2 (HTTP/1.1)",
            ),
            R(
                "GEN-09",
                "CORS: preflights answered before anything else; Warning, Content-Location, "
                "Content-Type, Location exposed",
                "outside PS3.18 (Fetch/CORS)",
            ),
            R(
                "GEN-10",
                "One audit row per transaction (actor, client, route, UIDs, status, count), "
                "failures included",
                "outside PS3.18 (audit messages: PS3.15 A.5)",
            ),
        ],
    ),
    (
        "2. Resource map (RES)",
        [
            R(
                "RES-01",
                "STOW: POST /studies and /studies/{study}; any other POST is 405",
                "Table 10.5.1-1",
                modules=("app/api/stow.py", "app/api/methods.py"),
                tests=(
                    "tests/api/test_capabilities.py::test_options_on_other_paths_and_405_with_allow",
                ),
            ),
            R(
                "RES-02",
                "QIDO: the six search resources",
                "§10.6.1",
                tests=("tests/api/test_qido_matrix.py::test_matrix",),
            ),
            R("RES-03", "Retrieve study, series and instance", "Table 10.4.1-1"),
            R("RES-04", "/metadata of study, series and instance", "Table 10.4.1-2"),
            R(
                "RES-05",
                "/rendered of study, series, instance and frames",
                "Table 10.4.1-3",
                tests=(
                    "tests/api/test_rendered.py::test_study_and_series_rendered",
                    "tests/api/test_rendered.py::test_ybr_multiframe_us",
                ),
            ),
            R(
                "RES-06",
                "/thumbnail at the same four levels (all or none)",
                "Table 10.4.1-4, §10.4.1.1.4",
                tests=(
                    "tests/api/test_rendered.py::test_thumbnails",
                    "tests/api/test_rendered.py::test_multiframe_thumbnail_is_the_middle_frame",
                ),
            ),
            R(
                "RES-07",
                "An opaque BulkDataURI per value, and /bulkdata of study, series and instance",
                "§10.4.1.1.5",
                modules=("app/api/wado/bulk.py",),
                tests=(
                    "tests/api/test_wado_bulkdata.py::test_pixel_data_by_bulk_data_uri",
                    "tests/api/test_wado_bulkdata.py::test_nested_bulk_value",
                ),
            ),
            R("RES-08", "/pixeldata of study, series, instance, and frames", "§10.4.1.1.6"),
            R("RES-09", "WADO-URI: GET {base}/wado?requestType=WADO", "chapter 9"),
            R(
                "RES-10",
                "DELETE on study, series and instance (an extension)",
                "none (extension)",
                note="PS3.18 defines no DELETE; the checklist's 'section 11' is its own DEL "
                "section (PS3.18 chapter 11 is the Worklist Service)",
                tests=("tests/api/test_delete.py::test_delete_errors",),
            ),
            R(
                "RES-11",
                "OPTIONS {base}/ returns the capabilities",
                "§8.9",
                note="the checklist's 'section 12' is its own CAP section; the transaction is "
                "§8.9 Retrieve Capabilities",
            ),
        ],
    ),
    (
        "3. Content negotiation (NEG)",
        [
            R(
                "NEG-01",
                "Accept parsed as in RFC 7231: q weights, case, quoted or unquoted parameters",
                "§8.7; RFC 7231 §5.3.2",
            ),
            R(
                "NEG-02",
                "Selection order: accept parameter, then Accept header, then the category "
                "default under a wildcard, else 406; ties prefer no transcoding",
                "§8.7.8.1",
            ),
            R(
                "NEG-03",
                "*/* and type/* mean the category default; invalid values dropped; nothing "
                "usable left is 406",
                "§8.7.7",
            ),
            R(
                "NEG-04",
                "No Accept header: 406 in strict mode, else treated as */*",
                "§8.7.7",
                status="yes (default differs from the standard)",
                note="the 406 rule is in the Accept header section (§8.7.7 in the 2019e "
                "edition), not §8.7.5 as the checklist says; the default "
                "(LIGHTBOX_STRICT_ACCEPT=false) deviates from it on purpose",
            ),
            R(
                "NEG-05",
                "accept query parameter: no wildcards, wins over the header; DICOM and rendered "
                "types mixed is 400",
                "§8.3.3.1, §8.7.5",
            ),
            R(
                "NEG-06",
                "transfer-syntax parameter: one UID or *, * meaning the stored encoding",
                "§8.7.3.5.2",
            ),
            R(
                "NEG-07",
                "No syntax asked for: Explicit VR Little Endian, except lossy or oversized pixels",
                "§8.7.3.4, Tables 8.7.3-2/-4",
            ),
            R(
                "NEG-08",
                "Implicit VR LE and Explicit VR BE never sent; converted to Explicit VR LE",
                "§8.7.3",
            ),
            R(
                "NEG-09",
                "A syntax we cannot produce is 406; every stored syntax decodes to Explicit VR LE",
                "§8.7.3, Table 10.4.3-1",
            ),
            R(
                "NEG-10",
                "multipart/related output: quoted type, boundaries, per-part Content-Type "
                "(with transfer-syntax), Content-Location, Content-Length",
                "§8.6.1.2",
            ),
            R(
                "NEG-11",
                "Single-part answers for single items (instance, bulk data, pixel data); study "
                "and series always multipart",
                "§10.4.4",
            ),
            R("NEG-12", "Bulk media type to transfer syntax map", "Table 8.7.3-5"),
            R(
                "NEG-13",
                "Legacy image/x-dicom-rle and image/x-jls understood, current names sent",
                "§8.7.3.3.2",
            ),
        ],
    ),
    (
        "4. STOW-RS (STOW)",
        [
            R(
                "STOW-01",
                "multipart/related; type=application/dicom, one PS3.10 file per part; File "
                "Meta wins over a part's transfer-syntax",
                "§10.5.1.4, §8.7.9",
                modules=("app/api/stow.py", "app/api/multipart.py"),
            ),
            R(
                "STOW-02",
                "DICOM JSON (or XML) metadata with bulk data parts bound by Content-Location",
                "§8.6.1.2, Table 10.5.2-1",
            ),
            R(
                "STOW-03",
                "Single-part application/dicom body (an extension)",
                "none (extension)",
            ),
            R(
                "STOW-04",
                "A request type that is not supported multipart/related: 415, nothing stored",
                "Table 10.5.3-1",
            ),
            R(
                "STOW-05",
                "Body streamed with a size cap (413); broken framing after N parts keeps them",
                "§10.5; §8.5 (413)",
            ),
            R(
                "STOW-06",
                "Unparseable part or missing/invalid UIDs: failure 0xC000",
                "Table I.2-2",
            ),
            R(
                "STOW-07",
                "Instance of another study than the URL: not stored, 0x0110, 409",
                "§10.5.1.1.1, Table 10.5.3-1",
                note="Table I.2-2 has no dedicated code; 0x0110 is our documented choice",
            ),
            R(
                "STOW-08",
                "Failure codes: 0x0122 SOP class, 0xC122 transfer syntax, 0xA7xx resources",
                "Table I.2-2, §I.2.2",
            ),
            R(
                "STOW-09",
                "Duplicate SOP Instance UID: identical content succeeds, different fails 0x0111 "
                "(or overwrite with 0xB000)",
                "PS3.7 Annex C (0111H)",
                note="PS3.18 says nothing on duplicates",
            ),
            R(
                "STOW-10",
                "Series filed under another study, study under another PatientID: 0x0110 (or "
                "accept with 0xB000)",
                "Table I.2-2",
            ),
            R(
                "STOW-11",
                "Warnings 0xB000 (coerced), 0xB006 (discarded), 0xB007 (does not match SOP class)",
                "Table I.2-1, §10.5.3",
                status="partial: 0xB000 only (overwrite, patient conflict accepted); no Original "
                "Attributes Sequence is written, 0xB006/0xB007 never sent",
                modules=("app/services/ingest.py",),
                tests=(
                    "tests/api/test_stow.py::test_overwrite_policy_replaces",
                    "tests/api/test_stow.py::test_patient_conflict_accept_warns",
                ),
            ),
            R(
                "STOW-12",
                "Response: the Store Instances Response Module as DICOM JSON (XML if asked)",
                "Table I.1-1",
            ),
            R(
                "STOW-13",
                "Response content: RetrieveURL, ReferencedSOPSequence, FailedSOPSequence, "
                "OtherFailuresSequence; empty sequences left out",
                "Annex I, Table I.1-1",
                modules=("app/api/stow.py",),
            ),
            R(
                "STOW-14",
                "FailureReason and WarningReason are JSON numbers (VR US)",
                "Table F.2.3-1",
                modules=("app/api/stow.py",),
            ),
            R(
                "STOW-15",
                "Status 200 / 202 / 400 / 409 from the outcomes",
                "Table 10.5.3-1",
            ),
            R(
                "STOW-16",
                "Response body with 200, 202, 409 (and 400 when instances are named); Location "
                "of the one study stored into",
                "Table 10.5.3-2",
                modules=("app/api/stow.py",),
            ),
            R(
                "STOW-17",
                "Each instance durable in storage before its index row commits; one failure never "
                "rolls back the others",
                "§10.5",
            ),
            R(
                "STOW-18",
                "The 128-byte preamble zeroed before storing",
                "PS3.10 §7.1",
            ),
        ],
    ),
    (
        "5. QIDO-RS (QIDO)",
        [
            R(
                "QIDO-01",
                "Match keys: keyword, tag, or dotted sequence path",
                "§8.3.1, §8.3.4.1",
                modules=("app/dicom/query.py",),
            ),
            R(
                "QIDO-02",
                "Same key twice is 400; values percent-decoded as UTF-8; unindexed keys ignored "
                "with Warning 299",
                "§8.3.4.1",
            ),
            R("QIDO-03", "Level rules: which attributes each resource matches", "§10.6.1.2.1"),
            R("QIDO-04", "The required match keys, each indexed", "Table 10.6.1-5"),
            R(
                "QIDO-05",
                "Also indexed: StudyDescription, PatientBirthDate, PatientSex, "
                "IssuerOfPatientID, SeriesDescription, BodyPartExamined, SeriesDate",
                "none (interoperability)",
                modules=("app/dicom/query.py", "app/index/models.py"),
                tests=(
                    "tests/api/test_qido.py::test_matching",
                    "tests/api/test_qido_matrix.py::test_matrix",
                ),
            ),
            R(
                "QIDO-06",
                "Single value matching, PN case-insensitive",
                "PS3.4 C.2.2.2.1",
            ),
            R("QIDO-07", "UID lists (comma or backslash) mean OR", "PS3.4 C.2.2.2.2, §8.3.4.1"),
            R(
                "QIDO-08",
                "Universal matching: an empty key filters nothing but is returned",
                "PS3.4 C.2.2.2.3",
                modules=("app/dicom/query.py",),
            ),
            R(
                "QIDO-09",
                "Wildcards * and ? on string VRs only; SQL LIKE characters literal",
                "PS3.4 C.2.2.2.4",
            ),
            R("QIDO-10", "DA/TM/DT ranges; malformed is 400", "PS3.4 C.2.2.2.5"),
            R(
                "QIDO-11",
                "Date and time keys given together match as one date-time range",
                "§8.3.4.1.1",
            ),
            R(
                "QIDO-12",
                "Sequence matching: keys on one path match within the same item",
                "PS3.4 C.2.2.2.6",
                status="partial: two keys on one path are matched independently, not within one "
                "item (docs/dicomweb.md)",
            ),
            R(
                "QIDO-13",
                "ModalitiesInStudy and multi-valued attributes match on any value",
                "PS3.4 C.2.2.2",
            ),
            R(
                "QIDO-14",
                "fuzzymatching=true|false (else 400): case- and accent-insensitive prefixes of "
                "name components",
                "§8.3.4.2",
            ),
            R(
                "QIDO-15",
                "emptyvaluematching / multiplevaluematching: unsupported, matched without them "
                "with Warning 299",
                "§8.3.4.5, §8.3.4.6",
                status="yes (the parameters are reported as unsupported)",
                modules=("app/dicom/query.py",),
                tests=("tests/api/test_qido.py::test_warnings",),
            ),
            R(
                "QIDO-16",
                "includefield: repeated, lists, keywords, tags or all; bad names 400 or Warning",
                "§8.3.4.3, §10.6.3.3",
            ),
            R(
                "QIDO-17",
                "limit/offset: unsigned integers, limit capped at the configured maximum",
                "§8.3.4.4",
            ),
            R(
                "QIDO-18",
                "Paging: stable order, Warning 299 when more results remain",
                "§8.3.4.4.1",
            ),
            R(
                "QIDO-19",
                "DICOM JSON array, 200; no match is 204 (or 200 [] by configuration)",
                "§F.2.1, §8.3.4.4.1, Table 10.6.3-1",
            ),
            R(
                "QIDO-20",
                'multipart/related; type="application/dicom+xml" results',
                "Table 10.6.4-1",
            ),
            R("QIDO-21", "Study result attributes", "Table 10.6.3-3"),
            R("QIDO-22", "Series result attributes", "Table 10.6.3-4"),
            R("QIDO-23", "Instance result attributes", "Table 10.6.3-5"),
            R(
                "QIDO-24",
                "Match keys and includefields returned; /series with study attributes, "
                "/instances with study and series attributes",
                "§10.6.3.3.2-3",
            ),
            R(
                "QIDO-25",
                "Required attributes always present (empty without Value); conditional ones when "
                "known",
                "§10.6.3",
            ),
            R(
                "QIDO-26",
                "Derived attributes (counts, ModalitiesInStudy, RetrieveURL) kept current and "
                "matchable",
                "Tables 10.6.3-3 to -5",
            ),
            R(
                "QIDO-27",
                "Interoperability: OHIF's study-list queries, dicomweb-client's paging",
                "none (interoperability)",
                modules=("app/api/qido.py",),
            ),
        ],
    ),
    (
        "6. WADO-RS retrieve (WADO)",
        [
            R(
                "WADO-01",
                "Study and series retrieve every instance, by SeriesNumber then InstanceNumber, "
                "each part with its Content-Location",
                "§10.4",
            ),
            R(
                "WADO-02",
                "Accept cases: no syntax means Explicit VR LE, * the stored bytes, a UID honoured "
                "or 406",
                "§8.7.3.4",
            ),
            R(
                "WADO-03",
                "Instances that cannot be produced are left out: 206 with a Warning; none: 406",
                "Table 10.4.3-1",
                note="§8.5 reserves 206 for Range requests; Table 10.4.3-1 uses it for partial "
                "content",
            ),
            R(
                "WADO-04",
                "Transcoding rewrites File Meta (zero preamble, DICM, our implementation UID)",
                "PS3.10 §7.1",
            ),
            R("WADO-05", "404 unknown, 410 tombstoned", "Table 10.4.3-1"),
        ],
    ),
    (
        "7. Metadata and the DICOM JSON model (META, JSON)",
        [
            R(
                "META-01",
                "/metadata: a DICOM JSON array, one object per instance, also at instance level",
                "§10.4.1.1.2, Annex F",
            ),
            R(
                "META-02",
                "Every attribute but File Meta and group lengths",
                "§10.4.1.1.2, §F.2.2",
            ),
            R(
                "META-03",
                "BulkDataURI for pixel data, encapsulated documents and large binary values",
                "§F.2.2",
            ),
            R(
                "META-04",
                "BulkDataURIs absolute and opaque, nested values addressed by tag and item",
                "Annex F, §10.4.1.1.5",
            ),
            R(
                "META-05",
                "Metadata cached after ingest and invalidated on change",
                "none (performance)",
                tests=("tests/api/test_wado_pixeldata_bulk.py::test_metadata_gzip",),
            ),
            R(
                "JSON-01",
                'Keys are 8 upper-case hex digits, sorted; every attribute has "vr" and at most '
                "one value kind",
                "§F.2.2",
            ),
            R("JSON-02", "VR to JSON type", "Table F.2.3-1"),
            R(
                "JSON-03",
                "IS/DS as JSON numbers unless precision would be lost; SV/UV beyond 2^53 as "
                "strings",
                "§F.2.3",
            ),
            R("JSON-04", "PN as Alphabetic/Ideographic/Phonetic groups", "§F.2.2"),
            R(
                "JSON-05",
                "Multiplicity: backslash splits the listed VRs, never LT/ST/UT/UR",
                "§F.2.4, §F.2.5",
            ),
            R(
                "JSON-06",
                "Padding stripped; DA/TM/DT kept as stored",
                "Annex F",
            ),
            R("JSON-07", "Sequences: one object per item, {} for an empty item", "Annex F"),
            R(
                "JSON-08",
                "Private elements with their creators; unknown implicit VR as UN",
                "Annex F",
            ),
            R("JSON-09", "InlineBinary: one base64 string, little endian", "§F.2.7"),
            R(
                "JSON-10",
                "JSON is UTF-8; the source SpecificCharacterSet is kept",
                "§F.2, §F.2.2 note 3",
            ),
        ],
    ),
    (
        "8. Bulk data, pixel data, frames (BULK, FRM)",
        [
            R(
                "BULK-01",
                "GET on a BulkDataURI: raw little-endian bytes, multipart or single part",
                "Table 8.7.3-4, §10.4.1.1.5",
            ),
            R(
                "BULK-02",
                "Encapsulated documents served with their MIME type",
                "§10.5.1.4",
            ),
            R(
                "BULK-03",
                "/bulkdata of study, series, instance: every bulk value, Content-Location = "
                "BulkDataURI",
                "Table 10.3-2, §10.4.1.1.5",
            ),
            R(
                "BULK-04",
                "Range requests on bulk data: 206 with Content-Range, 416",
                "RFC 7233 (outside PS3.18)",
            ),
            R(
                "FRM-01",
                "Frame lists: 1-based, no duplicates (400); beyond NumberOfFrames 404; order kept",
                "§10.4.1.1.6",
            ),
            R(
                "FRM-02",
                "One part per frame with Content-Location and transfer-syntax",
                "§8.7.3.3",
            ),
            R("FRM-03", "Native frames cut by offset; 1-bit frames repacked", "§8.7.3.3"),
            R(
                "FRM-04",
                "Encapsulated frames mapped by offset tables or markers, fragments joined",
                "§8.7.3.3.2",
            ),
            R(
                "FRM-05",
                "Frame Accept: octet-stream decoded, transfer-syntax=* as stored with its media "
                "type, an image type encoded or 406",
                "Table 8.7.3-5",
            ),
            R(
                "FRM-06",
                "Video: /frames is 406; /pixeldata is the whole stream",
                "§8.7.3.3.2",
            ),
            R(
                "FRM-07",
                "/pixeldata: one part per frame; series and study in retrieve order",
                "§10.4.1.1.6",
            ),
            R(
                "FRM-08",
                "Frame offsets recorded at ingest; frames read as byte ranges from storage",
                "none (performance)",
                modules=("app/dicom/frames.py", "app/index/models.py", "app/storage/s3.py"),
                tests=(
                    "tests/dicom/test_frames.py::test_multi_frame_files_are_indexed",
                    "tests/storage/test_contract.py::test_get_range",
                    "tests/api/test_wado_stream.py::test_frames_after_delete_and_restore",
                ),
            ),
        ],
    ),
    (
        "9. Rendered and thumbnails (REND, THUMB)",
        [
            R(
                "REND-01",
                "Rendered media types: JPEG (default), PNG, GIF; text/html and text/plain for text",
                "Table 8.7.4-1",
                note="optional types not offered: image/jp2, video",
            ),
            R(
                "REND-02",
                "Pipeline: modality LUT, VOI, MONOCHROME1, colour, crop, scale, annotations",
                "§8.3.5.1; PS3.4 N.2",
            ),
            R("REND-03", "quality 1-100, else 400", "§8.3.5.1.2"),
            R("REND-04", "viewport syntax, flips, aspect ratio", "§8.3.5.1.3"),
            R(
                "REND-05",
                "window=center,width,function (linear, linear-exact, sigmoid)",
                "§8.3.5.1.4; PS3.3 C.11.2.1.2",
            ),
            R(
                "REND-06",
                "annotation=patient,technique; unsupported values ignored with a Warning",
                "§8.3.5.1.1",
            ),
            R("REND-07", "iccprofile", "§8.3.5.1.5"),
            R(
                "REND-08",
                "Frame selection; multi-frame as animated GIF; study/series as multipart",
                "§10.4.1.1.3",
            ),
            R(
                "REND-09",
                "Content-Length, ETag from content and parameters, Cache-Control: private",
                "§8.4 (headers)",
            ),
            R("REND-10", "No pixel data: image types 406; PDF and SR as text", "Table 8.7.4-1"),
            R("THUMB-01", "Thumbnail parameters: accept, charset, viewport only", "§8.3.5.2"),
            R(
                "THUMB-02",
                "One image, no PHI; first series, middle instance, middle frame; 128 px",
                "§10.4.1.1.4",
            ),
        ],
    ),
    (
        "10. WADO-URI (URI)",
        [
            R("URI-01", "requestType and the three UIDs required (400)", "§9.4.2.1, §9.4.2.2"),
            R("URI-02", "contentType: application/dicom or rendered types", "§9.1.2.2.1"),
            R("URI-03", "No contentType: image/jpeg", "§9.3"),
            R(
                "URI-04",
                "transferSyntax; anonymize=yes (Basic Profile, Clean Pixel Data) or refusal",
                "§9.4, §9.4.2.4; PS3.15 Annex E",
            ),
            R(
                "URI-05",
                "Rendered parameters: frameNumber, rows/columns, region, window, quality",
                "§9.5, Table 9.5.1-1",
            ),
            R("URI-06", "Content-Type and Content-Location; statuses", "chapter 9"),
        ],
    ),
    (
        "11. DELETE, an extension (DEL)",
        [
            R(
                "DEL-01",
                "DELETE of study, series, instance at dicomweb-client's URLs",
                "none (extension)",
            ),
            R("DEL-02", "204, 404, 405 when disabled, 403 without the scope", "none (extension)"),
            R(
                "DEL-03",
                "Index rows and counts in one transaction; blobs after; audited",
                "none (extension)",
            ),
            R("DEL-04", "Tombstones: later GETs answer 410", "Tables 10.4.3-1, 9.4.3-1 (410)"),
            R(
                "DEL-05",
                "IHE IOCM rejection notes instead of DELETE",
                "none (IHE IOCM)",
                status="out of scope",
            ),
        ],
    ),
    (
        "12. Capabilities (CAP)",
        [
            R(
                "CAP-01",
                "OPTIONS {base}/: WADL or JSON description of resources, parameters, media "
                "types, syntaxes, extensions",
                "§8.9.1, §8.9.4, Annex H",
            ),
            R(
                "CAP-02",
                "OPTIONS elsewhere: 204 with Allow; preflights first",
                "§8.9; HTTP OPTIONS",
            ),
            R(
                "CAP-03",
                "A conformance statement in the repository (docs/conformance.md)",
                "PS3.2; items of §10.4.5, §10.5.5, §10.6.5",
            ),
        ],
    ),
    (
        "13. Character sets (CS)",
        [
            R(
                "CS-01",
                "Stored text decoded per SpecificCharacterSet (single-byte, ISO 2022, GB18030)",
                "§8.8; PS3.5 §6.1",
            ),
            R("CS-02", "Index holds UTF-8 and normalised person names", "none (index design)"),
            R("CS-03", "Query values percent-decoded as UTF-8", "§8.3.4.1"),
            R(
                "CS-04",
                "JSON and XML always UTF-8; rendered text honours the charset asked for",
                "§8.8.5, Table D-1",
                status="partial: JSON, XML and rendered text are always UTF-8; a charset asked "
                "for is not honoured",
                modules=("app/dicom/dicomjson.py", "app/api/xml.py"),
            ),
            R(
                "CS-05",
                "charset query parameter with an unsupported value is 400",
                "§8.3.3.2, §8.8.4",
                status="no: the charset parameter is ignored (WADO-URI: accepted and "
                "ignored); the CS-01..05 range of tests/api/test_qido_charsets.py does not test it",
            ),
            R(
                "CS-06",
                "application/dicom output keeps the stored bytes; text never re-encoded",
                "none",
                modules=("app/services/retrieve/context.py",),
                tests=(
                    "tests/api/test_wado_stream.py::test_study_body_is_the_stored_files_byte_for_byte",
                ),
            ),
            R(
                "CS-07",
                "Coercion re-encodes changed values in the dataset's character set",
                "PS3.5 §6.1",
                status="not applicable: ingest stores instances as received, never coerced",
            ),
        ],
    ),
    (
        "14. DIMSE for modalities (DIMSE)",
        [
            R("DIMSE-01", "AE title, port, timeouts, allow-list, TLS", "PS3.5 (AE); PS3.15 B.1"),
            R("DIMSE-02", "C-ECHO SCP", "PS3.4 Annex A"),
            R(
                "DIMSE-03",
                "C-STORE SCP for the storage SOP classes",
                "PS3.4 Annex B; PS3.8 §9.3.2.2",
            ),
            R("DIMSE-04", "Transfer syntaxes accepted per storage context", "PS3.5 §10.1"),
            R("DIMSE-05", "C-STORE statuses, sharing STOW's ingest", "PS3.4 Table B.2-1; PS3.7"),
            R("DIMSE-06", "Storage Commitment Push Model", "PS3.4 Annex J"),
            R("DIMSE-07", "C-FIND SCP, Patient and Study Root", "PS3.4 C.6.1, C.6.2"),
            R(
                "DIMSE-08",
                "Hierarchical search; relational only if negotiated",
                "PS3.4 C.4.1.3.1, C.5.1",
            ),
            R("DIMSE-09", "C-FIND keys, QIDO's matching engine", "PS3.4 Tables C.6-1 to C.6-5"),
            R("DIMSE-10", "C-FIND responses and statuses", "PS3.4 C.4.1"),
            R("DIMSE-11", "C-MOVE SCP to configured destinations", "PS3.4 C.4.2"),
            R("DIMSE-12", "C-MOVE progress and final statuses", "PS3.4 C.4.2"),
            R("DIMSE-13", "C-GET SCP with role selection", "PS3.4 C.4.3; PS3.7 D.3.3.4"),
            R(
                "DIMSE-14",
                "AE/IP allow-list as access control; every association audited",
                "PS3.15 (audit)",
                note="the audit trail (app/services/audit/) is meant to take these events",
            ),
        ],
    ),
    (
        "15. Conformance tests and fixtures (TEST)",
        [
            R(
                "TEST-01",
                "Fixtures: pydicom's test files (encodings, multi-frame, colour, SR, charsets) "
                "and pydicom-data",
                "none (test fixtures)",
                status="yes (tests/corpus.py)",
                tests=("tests/corpus.py",),
            ),
            R(
                "TEST-02",
                "dicomweb-client and OHIF interoperability",
                "none (interoperability)",
                status="yes (tests/e2e, tests/browser)",
                tests=("tests/browser/test_ohif.py",),
            ),
            R(
                "TEST-03",
                "Orthanc's test-suite scenarios against our ids",
                "none (interoperability)",
                status="yes (each scenario has a test)",
                tests=(
                    "tests/api/test_stow.py::test_study_mismatch",
                    "tests/api/test_stow.py::test_bad_parts_fail_with_cannot_understand",
                    "tests/api/test_wado.py::test_not_acceptable",
                    "tests/api/test_rendered.py::test_frames_from_byte_ranges_with_functional_groups",
                    "tests/api/test_stow.py::test_forwarded_headers_only_from_trusted_proxies",
                ),
            ),
        ],
    ),
]

REQUIREMENTS: dict[str, Requirement] = {r.id: r for _, group in GROUPS for r in group}


def expand(match: re.Match[str]) -> list[str]:
    """The ids one citation names: ``FRM-01/06`` two, ``META-01..05`` five.

    >>> [expand(m) for m in CITATION.finditer("NEG-06..09, FRM-01/06 and CS-02…03")]
    [['NEG-06', 'NEG-07', 'NEG-08', 'NEG-09'], ['FRM-01', 'FRM-06'], ['CS-02', 'CS-03']]
    """
    prefix, numbers = match.group(1), [int(match.group(2))]
    for separator, number in re.findall(r"(/|\.\.|…)(\d{2})", match.group(3)):
        if separator == "/":
            numbers.append(int(number))
        else:
            numbers.extend(range(numbers[-1] + 1, int(number) + 1))
    return [f"{prefix}-{n:02d}" for n in numbers]


def _tests_by_line(tree: ast.Module) -> list[tuple[int, int, str]]:
    """``(first line, last line, name)`` of every test function, decorators included."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
            "test"
        ):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            found.append((first, node.end_lineno or node.lineno, node.name))
    return found


def citations(top: str) -> dict[str, dict[str, set[str]]]:
    """id -> file -> names of the tests citing it ("" for a citation outside any test)."""
    found: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in sorted((REPO / top).rglob("*.py")):
        name = path.relative_to(REPO).as_posix()
        if name in NOT_CITATIONS:
            continue
        text = path.read_text()
        tests = _tests_by_line(ast.parse(text)) if top == "tests" else []
        for number, line in enumerate(text.splitlines(), start=1):
            for match in CITATION.finditer(line):
                inside = [t for t in tests if t[0] <= number <= t[1]]
                test = max(inside)[2] if inside else ""  # the innermost
                for rid in expand(match):
                    found[rid][name].add(test)
    return found


def defined(reference: str) -> bool:
    """Whether ``path`` or ``path::function`` names a file (and a function) of the repository."""
    path, _, function = reference.partition("::")
    file = REPO / path
    if not file.is_file():
        return False
    if not function:
        return True
    tree = ast.parse(file.read_text())
    return any(
        isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == function
        for n in ast.walk(tree)
    )


def _modules(r: Requirement, cited: dict[str, set[str]]) -> str:
    names = sorted(set(cited) | set(r.modules))
    return ", ".join(f"`{n}`" for n in names) or "-"


def _tests(r: Requirement, cited: dict[str, set[str]]) -> str:
    by_file: dict[str, set[str]] = defaultdict(set)
    for file, tests in cited.items():
        by_file[file] |= tests
    for reference in r.tests:
        file, _, function = reference.partition("::")
        by_file[file].add(function)
    cells = []
    for file in sorted(by_file):
        functions = sorted(t for t in by_file[file] if t)
        whole = " (file)" if "" in by_file[file] else ""
        listed = ": " + ", ".join(f"`{t}`" for t in functions) if functions else ""
        cells.append(f"`{file}`{whole}{listed}")
    return "; ".join(cells) or "-"


def _status(r: Requirement, modules: str) -> str:
    if r.status:
        return r.status
    if r.id.startswith("DIMSE-"):
        return NOT_YET
    return "yes" if modules != "-" else "-"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


HEADER = """\
# Requirement ids

<!-- generated by `python -m tests.requirements_doc` from tests/requirements_doc.py and the
     citations in app/ and tests/; tests/test_requirements_doc.py fails when it drifts. -->

Code, tests and commits cite requirement ids such as STOW-09 or NEG-08. They come from the
project's DICOMweb checklist (kept outside the repository); this file is their definition here:
what each asks, in short, and the section of the DICOM standard it comes from (PS3.18 unless
another part is named; where the checklist and the standard differ, the standard wins and the
row says so). "Implemented in" lists the modules of `app/` that cite the id, "shown by" the tests
that cite it (by name when the citation is inside the test, "(file)" when a file's docstring or
comments cite it) plus, for ids no line cites, the modules and tests that clearly do the work.
How each transaction behaves in detail: [`dicomweb.md`](dicomweb.md); the conformance statement:
[`conformance.md`](conformance.md).
"""


def render() -> str:
    app, tests = citations("app"), citations("tests")
    out = [HEADER]
    for title, group in GROUPS:
        out += [
            f"## {title}",
            "",
            "| id | requirement | standard | status | implemented in | shown by |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for r in group:
            modules = _modules(r, app.get(r.id, {}))
            section = r.section + (f"; *{r.note}*" if r.note else "")
            row = [
                r.id,
                r.text,
                section,
                _status(r, modules),
                modules,
                _tests(r, tests.get(r.id, {})),
            ]
            out.append("| " + " | ".join(_cell(c) for c in row) + " |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    DOC.write_text(render())
    sys.stdout.write(f"wrote {DOC.relative_to(REPO)}\n")


if __name__ == "__main__":
    main()
