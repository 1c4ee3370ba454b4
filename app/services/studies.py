"""The study catalogue of the web pages (issue 22, point 2): the study list, a study's overview
and its reports as text, on the QIDO engine and the render service.

Every search here is a :class:`~app.dicom.query.Query` run by :class:`QueryService` (the service
the QIDO-RS routes call), so the pages match exactly as QIDO does (fuzzy person names, wildcards,
date ranges) and see only what the caller's grant allows. What the list adds is an order other
than QIDO's (:class:`~app.dicom.query.SortOrder`, on indexed columns) and paging by page number.
A report's text is the render service's ``text/plain`` rendering of the instance (SR content
tree, :func:`app.dicom.render.render_text`).
"""

import re
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any, Final

from app.dicom import display
from app.dicom.query import (
    Query,
    Resource,
    SortOrder,
    StudyRestriction,
    Wildcard,
    parse_qido,
)
from app.dicom.render import TEXT_PLAIN, RenderParams
from app.dicom.target import Target
from app.errors import BadRequest, DecoderFailed, NotAcceptable, NotFound
from app.services.query import QueryService
from app.services.render import RenderRequest, RenderService
from app.services.retrieve import Acceptable, Accepted, RetrieveService

__all__ = [
    "MAX_PAGE",
    "PAGE_SIZES",
    "Report",
    "SeriesRow",
    "StudyCatalog",
    "StudyList",
    "StudyOverview",
    "StudyRow",
    "StudySearch",
]

#: the page sizes the list offers (the first is the default)
PAGE_SIZES: Final = (25, 50, 100)
#: the last page number accepted (deeper pages: narrow the search)
MAX_PAGE: Final = 4000
#: a search field's longest value
MAX_FIELD: Final = 64
_MODALITY: Final = re.compile(r"[A-Z0-9_]{1,16}")
#: the attributes a row of the list shows beyond QIDO's defaults
_LIST_FIELDS: Final = ("StudyDescription",)
_SERIES_FIELDS: Final = ("SeriesDate", "BodyPartExamined", "SeriesDescription")
#: keys matched where they contain the value, whatever its case
_CONTAINS: Final = frozenset({"PatientID", "AccessionNumber", "StudyDescription"})


def _field(value: str, name: str) -> str:
    """A search field's value: trimmed, bounded, no control characters and no backslash (the
    value delimiter of DICOM, which would make it a list)."""
    value = value.strip()
    if len(value) > MAX_FIELD:
        raise BadRequest(f"{name}: at most {MAX_FIELD} characters")
    if "\\" in value or any(unicodedata.category(c) == "Cc" for c in value):
        raise BadRequest(f"{name}: backslashes and control characters are not allowed")
    return value


def _contains(value: str) -> str:
    """A "contains" match: the value as typed when it has wildcards (``*``, ``?``), else
    ``*value*``."""
    return value if ("*" in value or "?" in value) else f"*{value}*"


@dataclass(frozen=True, slots=True)
class StudySearch:
    """What the study list's form asks for; empty fields match everything."""

    patient_name: str = ""
    patient_id: str = ""
    accession: str = ""
    description: str = ""
    modality: str = ""
    date_from: date | None = None
    date_to: date | None = None
    #: a :data:`~app.dicom.query.SORT_KEYS` key; StudyDate newest first by default
    sort: str = "StudyDate"
    descending: bool = True
    page: int = 1
    page_size: int = PAGE_SIZES[0]

    def query(self) -> Query:
        """The QIDO query of this search (:class:`BadRequest` naming a field that is wrong).

        Names match fuzzily (each word a prefix of a name component, in any order)
        unless they hold wildcards; identifiers, accession numbers and descriptions match
        where they contain the value, whatever its case (:class:`Wildcard` ``folded``).
        """
        params: list[tuple[str, str]] = []
        name = _field(self.patient_name, "Patient name")
        if name:
            params.append(("PatientName", name))
            if "*" not in name and "?" not in name:
                params.append(("fuzzymatching", "true"))
        for key, value, label in (
            ("PatientID", self.patient_id, "Patient ID"),
            ("AccessionNumber", self.accession, "Accession number"),
            ("StudyDescription", self.description, "Description"),
        ):
            value = _field(value, label)
            if value:
                params.append((key, _contains(value)))
        modality = _field(self.modality, "Modality").upper()
        if modality:
            if not _MODALITY.fullmatch(modality):
                raise BadRequest("Modality: a DICOM modality code such as CT or MR")
            params.append(("ModalitiesInStudy", modality))
        if self.date_from or self.date_to:
            if self.date_from and self.date_to and self.date_from > self.date_to:
                raise BadRequest("Study date: the first date is after the last")
            low = self.date_from.strftime("%Y%m%d") if self.date_from else ""
            high = self.date_to.strftime("%Y%m%d") if self.date_to else ""
            params.append(("StudyDate", f"{low}-{high}"))
        if self.page_size not in PAGE_SIZES:
            raise BadRequest(f"page size: one of {', '.join(map(str, PAGE_SIZES))}")
        if not 1 <= self.page <= MAX_PAGE:
            raise BadRequest(f"page: 1 to {MAX_PAGE} (narrow the search to see further)")
        params += [("includefield", f) for f in _LIST_FIELDS]
        params += [("limit", str(self.page_size)), ("offset", str(self.offset))]
        query = parse_qido(params, resource=Resource.STUDIES)
        folded = {
            key: Wildcard(matcher.pattern, folded=True)
            for key, matcher in query.filters.items()
            if key in _CONTAINS and isinstance(matcher, Wildcard)
        }
        query = replace(query, filters={**query.filters, **folded})
        if self.sort == "StudyDate" and self.descending:
            return query  # QIDO's own order, on its index-ordered plan
        return replace(query, order=SortOrder(self.sort, self.descending))

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.page_size


@dataclass(frozen=True, slots=True)
class StudyRow:
    """One study as the list and the study page show it."""

    study_uid: str
    patient_name: str
    patient_id: str
    birth_date: str
    sex: str
    study_date: str
    study_time: str
    accession: str
    description: str
    modalities: tuple[str, ...]
    series: int | None
    instances: int | None
    referring_physician: str = ""
    study_id: str = ""

    @classmethod
    def of(cls, obj: dict[str, Any]) -> "StudyRow":
        return cls(
            study_uid=display.first(obj, "0020000D"),
            patient_name=display.person_name(display.first(obj, "00100010")),
            patient_id=display.first(obj, "00100020"),
            birth_date=display.da(display.first(obj, "00100030")),
            sex=display.first(obj, "00100040"),
            study_date=display.da(display.first(obj, "00080020")),
            study_time=display.tm(display.first(obj, "00080030")),
            accession=display.first(obj, "00080050"),
            description=display.first(obj, "00081030"),
            modalities=tuple(display.strings(obj, "00080061")),
            series=display.number(obj, "00201206"),
            instances=display.number(obj, "00201208"),
            referring_physician=display.person_name(display.first(obj, "00080090")),
            study_id=display.first(obj, "00200010"),
        )


@dataclass(frozen=True, slots=True)
class StudyList:
    """One page of the list and where it stands."""

    search: StudySearch
    rows: list[StudyRow]
    #: matches in all (a lower bound when not ``exact``)
    total: int
    exact: bool = True

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.search.page_size))

    @property
    def first(self) -> int:
        """The position of the page's first row (1-based; 0 when empty)."""
        return self.search.offset + 1 if self.rows else 0

    @property
    def last(self) -> int:
        return self.search.offset + len(self.rows)


@dataclass(frozen=True, slots=True)
class SeriesRow:
    """A series of the study page."""

    series_uid: str
    number: str
    modality: str
    description: str
    date: str
    body_part: str
    instances: int | None
    #: every instance of it is a report (no image to show as a thumbnail)
    reports_only: bool = False


@dataclass(frozen=True, slots=True)
class Report:
    """A structured report or an encapsulated PDF of the study."""

    series_uid: str
    sop_uid: str
    sop_class_uid: str
    kind: str  # "sr" or "pdf"
    title: str
    number: str


@dataclass(frozen=True, slots=True)
class StudyOverview:
    """What the study page shows."""

    study: StudyRow
    series: list[SeriesRow]
    reports: list[Report] = field(default_factory=list)

    @property
    def images(self) -> list[SeriesRow]:
        """The series with images (those the viewers can show)."""
        return [s for s in self.series if not s.reports_only]


class StudyCatalog:
    """The web pages' reads of the archive (module docstring)."""

    def __init__(self, query: QueryService, render: RenderService, retrieve: RetrieveService):
        self._query = query
        self._render = render
        self._retrieve = retrieve

    async def studies(
        self, search: StudySearch, base_url: str, *, restrict: StudyRestriction | None = None
    ) -> StudyList:
        """One page of the studies matching ``search``, and how many match."""
        results = await self._query.search(search.query(), base_url, restrict=restrict)
        rows = [StudyRow.of(obj) for obj in results.items]
        return StudyList(search, rows, results.total, results.exact)

    async def study(
        self, study_uid: str, base_url: str, *, restrict: StudyRestriction | None = None
    ) -> StudyRow:
        """A study's row (404, or 410 once deleted, when absent or outside the grant)."""
        target = Target(study_uid)  # 400 for a malformed UID
        found = await self._query.search(
            parse_qido(
                [("StudyInstanceUID", study_uid), ("includefield", "all")],
                resource=Resource.STUDIES,
            ),
            base_url,
            restrict=restrict,
        )
        if not found.items:
            raise await self._retrieve.absent(target)
        return StudyRow.of(found.items[0])

    async def overview(
        self, study_uid: str, base_url: str, *, restrict: StudyRestriction | None = None
    ) -> StudyOverview:
        """A study with its series and reports (404, or 410 once deleted, when absent)."""
        study = await self.study(study_uid, base_url, restrict=restrict)
        series = await self._query.search(
            parse_qido(
                [("includefield", f) for f in _SERIES_FIELDS],
                resource=Resource.STUDY_SERIES,
                study_uid=study_uid,
            ),
            base_url,
            restrict=restrict,
        )
        reports = await self._reports(study_uid, base_url, restrict)
        report_counts: dict[str, int] = {}
        for report in reports:
            report_counts[report.series_uid] = report_counts.get(report.series_uid, 0) + 1
        rows = []
        for obj in series.items:
            uid = display.first(obj, "0020000E")
            instances = display.number(obj, "00201209")
            rows.append(
                SeriesRow(
                    series_uid=uid,
                    number=display.first(obj, "00200011"),
                    modality=display.first(obj, "00080060"),
                    description=display.first(obj, "0008103E"),
                    date=display.da(display.first(obj, "00080021")),
                    body_part=display.first(obj, "00180015"),
                    instances=instances,
                    reports_only=bool(instances) and report_counts.get(uid, 0) >= (instances or 0),
                )
            )
        return StudyOverview(study, rows, reports)

    async def _reports(
        self, study_uid: str, base_url: str, restrict: StudyRestriction | None
    ) -> list[Report]:
        query = parse_qido(
            [
                ("SOPClassUID", ",".join(sorted(display.REPORT_SOP_CLASSES))),
                ("includefield", "SeriesDescription"),
            ],
            resource=Resource.STUDY_INSTANCES,
            study_uid=study_uid,
        )
        found = await self._query.search(query, base_url, restrict=restrict)
        reports = []
        for obj in found.items:
            sop_class = display.first(obj, "00080016")
            reports.append(
                Report(
                    series_uid=display.first(obj, "0020000E"),
                    sop_uid=display.first(obj, "00080018"),
                    sop_class_uid=sop_class,
                    kind="pdf" if sop_class == display.ENCAPSULATED_PDF else "sr",
                    title=display.first(obj, "0008103E") or display.sop_class_name(sop_class),
                    number=display.first(obj, "00200013"),
                )
            )
        return reports

    async def report_text(self, target: Target) -> str:
        """A structured report's content as plain text (404 when it is no SR of the archive)."""
        accepted = Accepted.of(Acceptable(TEXT_PLAIN, whole=True))
        try:
            rendering = await self._render.rendered(RenderRequest(target, accepted, RenderParams()))
        except (NotAcceptable, DecoderFailed) as exc:  # not an SR, or one that cannot be read
            raise NotFound("the instance is no structured report that can be shown") from exc
        chunks: list[bytes] = []
        if rendering.parts is not None:
            async for part in rendering.parts:
                async for chunk in part.chunks:
                    chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", errors="replace")
