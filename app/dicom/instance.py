"""What ingest learns from one DICOM instance: index fields per level, DICOM JSON, frame index.

``app.dicom.parse.parse_instance`` produces a :class:`ParsedInstance` from the bytes of a PS3.10
file, once per instance; the index stores its fields as typed columns and its JSON as ready-to-send
bytes (DESIGN.md §3), so queries and metadata never reopen the DICOM file.

Stored DICOM JSON (PS3.18 Annex F) is UTF-8 ``orjson`` output. A ``BulkDataURI`` in stored JSON is
*relative to the DICOMweb service root* and starts with ``/studies/``; the retrieve service splices
the public base URL in front of it at serve time by replacing the byte string
``"BulkDataURI":"`` with ``"BulkDataURI":"<base>`` (in orjson output an unescaped ``"`` only
delimits strings, so the pattern cannot occur inside a value).
"""

from dataclasses import dataclass, field
from datetime import date


@dataclass(frozen=True, slots=True)
class StudyFields:
    """Study-level index columns (patient data denormalised into the study, DESIGN.md §3)."""

    study_uid: str
    patient_id: str | None = None
    patient_name: str | None = None  # UTF-8, PN groups joined by "=", components by "^"
    issuer_of_patient_id: str | None = None
    patient_birth_date: date | None = None
    patient_sex: str | None = None
    study_date: date | None = None
    study_time: str | None = None  # normalised "HHMMSS.ffffff" (see app.dicom.text.normalize_tm)
    accession_number: str | None = None
    referring_physician_name: str | None = None
    study_id: str | None = None
    study_description: str | None = None
    timezone_offset: str | None = None  # (0008,0201) "+HHMM" / "-HHMM"
    specific_character_set: str | None = None  # original (0008,0005), backslash-joined


@dataclass(frozen=True, slots=True)
class SeriesFields:
    """Series-level index columns (QIDO-04/05/22)."""

    series_uid: str
    modality: str | None = None
    series_number: int | None = None
    series_description: str | None = None
    series_date: date | None = None
    series_time: str | None = None  # normalised like StudyFields.study_time
    body_part_examined: str | None = None
    pps_start_date: date | None = None  # (0040,0244)
    pps_start_time: str | None = None  # (0040,0245), normalised
    # RequestAttributesSequence (0040,0275) items' values, in item order
    scheduled_procedure_step_ids: tuple[str, ...] = ()
    requested_procedure_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class InstanceFields:
    """Instance-level index columns (QIDO-04/23)."""

    sop_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    instance_number: int | None = None
    rows: int | None = None
    columns: int | None = None
    bits_allocated: int | None = None
    number_of_frames: int | None = None  # None when the instance has no pixel data


@dataclass(frozen=True, slots=True)
class FrameIndex:
    """Where each frame's bytes are inside the stored blob (FRM-03/04, DESIGN.md §3).

    ``ranges[n]`` lists the ``(offset, length)`` byte ranges in the blob whose concatenation is
    frame ``n + 1``: one range for native data, the fragment payloads (no item tags) for
    encapsulated data.
    """

    encapsulated: bool
    ranges: tuple[tuple[tuple[int, int], ...], ...]
    #: BitsAllocated == 1 native data only: bit offset (0-7) of each frame's first pixel in its
    #: first byte (frames are bit-packed with no byte alignment, FRM-03)
    bit_offsets: tuple[int, ...] | None = None
    #: big-endian native data: the word size to byte-swap when serving little endian (2 or 4)
    swap_bytes: int = 0

    def to_json(self) -> dict[str, object]:
        """A compact JSON-able form for the index (``from_json`` reverses it)."""
        out: dict[str, object] = {
            "e": self.encapsulated,
            "r": [list(map(list, f)) for f in self.ranges],
        }
        if self.bit_offsets is not None:
            out["b"] = list(self.bit_offsets)
        if self.swap_bytes:
            out["s"] = self.swap_bytes
        return out

    @classmethod
    def from_json(cls, data: dict[str, object]) -> "FrameIndex":
        """Rebuild from :meth:`to_json` output."""
        ranges = data["r"]
        bits = data.get("b")
        assert isinstance(ranges, list)
        return cls(
            encapsulated=bool(data["e"]),
            ranges=tuple(tuple((int(o), int(n)) for o, n in frame) for frame in ranges),
            bit_offsets=tuple(int(b) for b in bits) if isinstance(bits, list) else None,
            swap_bytes=int(data.get("s", 0)),  # type: ignore[call-overload]
        )


@dataclass(frozen=True, slots=True)
class ParsedInstance:
    """Everything ingest needs from one instance, computed in one parse (DESIGN.md §5)."""

    study: StudyFields
    series: SeriesFields
    instance: InstanceFields
    #: DICOM JSON object (bytes) of the patient + study level attributes (QIDO-21)
    study_json: bytes
    #: DICOM JSON object of the series level attributes (QIDO-22)
    series_json: bytes
    #: DICOM JSON object of the instance level attributes (QIDO-23)
    instance_json: bytes
    #: the full WADO-RS metadata object: all attributes except group 0002 and group lengths,
    #: bulk values as relative BulkDataURIs (META-02/03/04)
    metadata_json: bytes
    #: None when there is no pixel data, or its frames are not byte ranges of the stored file
    #: (deflated transfer syntax)
    frames: FrameIndex | None
    #: non-fatal problems noticed while parsing (logged; never PHI)
    notes: tuple[str, ...] = field(default=())

    @property
    def study_uid(self) -> str:
        return self.study.study_uid

    @property
    def series_uid(self) -> str:
        return self.series.series_uid

    @property
    def sop_uid(self) -> str:
        return self.instance.sop_uid
