"""The pull source over DIMSE: a legacy PACS searched with C-FIND and fetched with C-GET or
C-MOVE (:class:`~app.services.pull.PullSource`, for ``lightbox pull`` and ``/api/jobs/pull``).

The services run on an event loop; pynetdicom blocks. Each request runs in a worker thread of
this module's pool (one association per unit at a time, so the pool is as large as the most
units pulled at once). A C-GET's C-STORE sub-operations arrive in that thread: each instance is
written there into an ingest spool (a File Meta of ours, then the data set exactly as received;
the disk I/O stays off the loop), then handed to the loop with
``asyncio.run_coroutine_threadsafe`` and answered once the ingest session queued it. With
file-backed reception on (:mod:`app.dimse.receive`: ``lightbox pull``, a process that runs the
listener) pynetdicom writes each data set to a file as it arrives and the handler copies it from
there; otherwise pynetdicom holds it in memory until the handler runs. The loop is
the caller's own (the CLI's ``asyncio.run``, the HTTP server's), not a
:class:`~app.dimse.bridge.Bridge`: the Bridge owns a loop of its own for the DIMSE server, and a
pull runs on whichever loop its services live on.

A cancelled fetch (a job cancelled or interrupted) aborts its association from the loop
(:class:`~app.dimse.scu.Cancel`) and waits for its thread to end.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Final, TypeVar

from pydicom import Dataset
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pynetdicom import _config as pynetdicom_config

from app.config import DimseSettings, Settings
from app.dicom.filemeta import part10_header
from app.dicom.uids import is_valid_uid
from app.dimse import scu
from app.dimse.scu import Cancel, Peer, ScuError, ScuSettings
from app.dimse.tls import client_context
from app.errors import OutOfResources
from app.services.aes import RemoteAe
from app.services.pull import (
    UIDS_PER_REQUEST,
    FetchOutcome,
    InstanceSink,
    PullLevel,
    PullMethod,
    SourceError,
    SourceInstance,
    SourceUnit,
)
from app.services.spool import Spool

__all__ = ["DimsePullSource", "DimsePullSources"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: C-STORE statuses we answer (PS3.4 Table B.2-1)
_STORED: Final = 0x0000
_OUT_OF_RESOURCES: Final = 0xA700
_PROCESSING_FAILURE: Final = 0x0110
_CANNOT_UNDERSTAND: Final = 0xC000
#: preamble, "DICM" and the File Meta Information Group Length element (12 bytes)
_META_HEAD: Final = 128 + 4 + 12
_NUMERIC_VRS: Final = frozenset({"US", "UL", "SS", "SL", "UV", "SV"})


class DimsePullSources:
    """Makes a :class:`DimsePullSource` per job run (the services' ``SourceFactory``)."""

    def __init__(
        self,
        ours: ScuSettings,
        *,
        move_destination: str,
        threads: int = 32,
        tls: DimseSettings | None = None,
    ) -> None:
        pynetdicom_log = logging.getLogger("pynetdicom")
        if pynetdicom_log.level == logging.NOTSET:
            # it logs every PDU and identifier at INFO: patient names and IDs in the server log
            pynetdicom_log.setLevel(logging.WARNING)
        self._ours = ours
        self._destination = move_destination
        #: the listener's TLS settings, for sources marked ``tls``
        self._tls = tls
        # threads are made as needed: one per association in flight
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="pull")

    @classmethod
    def from_settings(cls, settings: Settings) -> "DimsePullSources":
        pull = settings.dimse.pull
        ours = ScuSettings(settings.dimse.ae_title, timeout=pull.timeout, max_pdu=pull.max_pdu)
        return cls(ours, move_destination=settings.dimse.ae_title, tls=settings.dimse)

    def __call__(self, ae: RemoteAe, method: PullMethod) -> "DimsePullSource":
        peer = Peer(ae.ae_title, ae.host, ae.port, ae.tls)
        ours = self._ours
        if ae.tls and self._tls is not None:
            # our certificate, and the CAs the source's must chain to
            ours = replace(ours, tls_context=client_context(self._tls))
        return DimsePullSource(ours, peer, method, self._destination, self._pool)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class DimsePullSource:
    """One remote AE as a :class:`~app.services.pull.PullSource`."""

    def __init__(
        self,
        ours: ScuSettings,
        peer: Peer,
        method: PullMethod,
        move_destination: str,
        pool: ThreadPoolExecutor,
    ) -> None:
        self._ours = ours
        self._peer = peer
        self._method = method
        self._destination = move_destination
        self._pool = pool

    async def find(self, level: PullLevel, keys: Mapping[str, str]) -> list[SourceUnit]:
        identifier = _identifier(level.value, keys)
        if level is PullLevel.STUDY:
            _ask(identifier, "StudyInstanceUID", "PatientID", "NumberOfStudyRelatedInstances")
        else:
            _ask(identifier, "SeriesInstanceUID", "NumberOfSeriesRelatedInstances")

        def search(cancel: Cancel) -> list[Dataset]:
            if level is PullLevel.STUDY:  # a job's first contact with the source
                scu.reachable(self._peer, self._ours.timeout)
            return scu.find(self._ours, self._peer, identifier, cancel=cancel)

        matches = await self._blocking(search)
        units = []
        for match in matches:
            study = str(match.get("StudyInstanceUID", "") or keys.get("StudyInstanceUID", ""))
            series = str(match.get("SeriesInstanceUID", "")) if level is PullLevel.SERIES else None
            if not is_valid_uid(study) or (series is not None and not is_valid_uid(series)):
                log.warning("%s sent a match without a valid UID; left out", self._peer.name)
                continue
            count = match.get(
                "NumberOfStudyRelatedInstances"
                if level is PullLevel.STUDY
                else "NumberOfSeriesRelatedInstances"
            )
            units.append(
                SourceUnit(
                    study,
                    series,
                    str(match.get("PatientID", "") or "") or None,
                    _count(count),
                )
            )
        return list({u.key: u for u in units}.values())

    async def instances(self, unit: SourceUnit) -> list[SourceInstance]:
        def listed(cancel: Cancel) -> list[SourceInstance]:
            with scu.finder(self._ours, self._peer, cancel=cancel) as search:
                series = [unit.series_uid] if unit.series_uid else None
                if series is None:
                    query = _identifier("SERIES", {"StudyInstanceUID": unit.study_uid})
                    _ask(query, "SeriesInstanceUID")
                    series = [
                        str(m.SeriesInstanceUID)
                        for m in search(query)
                        if is_valid_uid(str(m.get("SeriesInstanceUID", "")))
                    ]
                found: dict[str, SourceInstance] = {}
                for series_uid in dict.fromkeys(series):
                    query = _identifier(
                        "IMAGE",
                        {"StudyInstanceUID": unit.study_uid, "SeriesInstanceUID": series_uid},
                    )
                    _ask(query, "SOPInstanceUID", "SOPClassUID")
                    for match in search(query):
                        sop = str(match.get("SOPInstanceUID", ""))
                        if not is_valid_uid(sop):
                            continue
                        sop_class = str(match.get("SOPClassUID", "") or "")
                        found[sop] = SourceInstance(
                            sop, series_uid, sop_class if is_valid_uid(sop_class) else None
                        )
                return list(found.values())

        return await self._blocking(listed)

    async def fetch(
        self,
        unit: SourceUnit,
        wanted: Sequence[SourceInstance],
        *,
        whole: bool,
        sink: InstanceSink,
    ) -> FetchOutcome:
        identifiers = _retrieve_identifiers(unit, wanted, whole=whole)
        if self._method is PullMethod.MOVE:
            result = await self._blocking(
                lambda cancel: scu.move(
                    self._ours, self._peer, identifiers, self._destination, cancel=cancel
                )
            )
        else:
            on_store = _store_handler(self._peer, sink, asyncio.get_running_loop(), self._ours)
            # every SOP class listed, or (one unknown) every storage class there is
            classes = [i.sop_class_uid or "" for i in wanted]
            known = [] if "" in classes else classes
            result = await self._blocking(
                lambda cancel: scu.get(
                    self._ours, self._peer, identifiers, known, on_store, cancel=cancel
                )
            )
        return FetchOutcome(result.completed, result.failed, result.warning, result.status)

    async def _blocking(self, call: Callable[[Cancel], T]) -> T:
        """``call`` in a worker thread; cancelled, it aborts the association and waits for the
        thread. A DIMSE failure becomes :class:`~app.services.pull.SourceError`."""
        cancel = Cancel()
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, call, cancel)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            cancel()
            # the thread ends once its association is aborted
            with contextlib.suppress(ScuError, TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(future), self._ours.timeout)
            raise
        except ScuError as exc:
            raise SourceError(exc.message) from None


def _identifier(level: str, keys: Mapping[str, str]) -> Dataset:
    """A query identifier at ``level`` with ``keys`` as matching keys (PS3.4 §C.4.1.1.3)."""
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        tag = tag_for_keyword(keyword)
        if tag is None:
            raise SourceError(f"unknown attribute {keyword}")
        vr = str(dictionary_VR(tag)).split(" or ")[0]
        if vr in _NUMERIC_VRS and value:
            try:
                ds.add_new(tag, vr, int(value))
            except ValueError:
                raise SourceError(f"{keyword} takes a number, got {value!r}") from None
            continue
        ds.add_new(tag, vr, value)
    return ds


def _ask(ds: Dataset, *keywords: str) -> None:
    """Return keys: asked for with an empty value unless they are matching keys already."""
    for keyword in keywords:
        if keyword not in ds:
            setattr(ds, keyword, "")


def _count(value: Any) -> int | None:
    try:
        count = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return count if count >= 0 else None


def _retrieve_identifiers(
    unit: SourceUnit, wanted: Sequence[SourceInstance], *, whole: bool
) -> list[Dataset]:
    """The identifiers of a C-GET/C-MOVE: the unit itself (STUDY or SERIES level), or its
    instances wanted, as lists of SOP Instance UIDs per series (IMAGE level, PS3.4 §C.4.2.2.1)."""
    if whole:
        ds = Dataset()
        ds.QueryRetrieveLevel = "SERIES" if unit.series_uid else "STUDY"
        ds.StudyInstanceUID = unit.study_uid
        if unit.series_uid:
            ds.SeriesInstanceUID = unit.series_uid
        return [ds]
    by_series: dict[str, list[str]] = {}
    for instance in wanted:
        by_series.setdefault(instance.series_uid, []).append(instance.sop_uid)
    identifiers = []
    for series_uid, sops in by_series.items():
        for start in range(0, len(sops), UIDS_PER_REQUEST):
            ds = Dataset()
            ds.QueryRetrieveLevel = "IMAGE"
            ds.StudyInstanceUID = unit.study_uid
            ds.SeriesInstanceUID = series_uid
            ds.SOPInstanceUID = sops[start : start + UIDS_PER_REQUEST]
            identifiers.append(ds)
    return identifiers


def _store_handler(
    peer: Peer, sink: InstanceSink, loop: asyncio.AbstractEventLoop, ours: ScuSettings
) -> Callable[[Any], int]:
    """The C-STORE sub-operation handler of a C-GET: spool the instance (in this thread), hand
    it to the ingest session (on the loop), answer."""

    def on_store(event: Any) -> int:
        request = event.request
        sop_class, sop_uid = str(request.AffectedSOPClassUID), str(request.AffectedSOPInstanceUID)
        if not (is_valid_uid(sop_class) and is_valid_uid(sop_uid)):
            log.warning("%s sent a C-STORE with malformed UIDs; refused", peer.name)
            return _CANNOT_UNDERSTAND
        spool = sink.spool()
        try:
            # our File Meta (the command's UIDs, the context's syntax, the source's AE title),
            # then the data set exactly as received
            ts = str(event.context.transfer_syntax)
            spool.write(part10_header(sop_class, sop_uid, ts, peer.ae_title))
            if pynetdicom_config.STORE_RECV_CHUNKED_DATASET:
                _copy_received(event.dataset_path, spool)
            else:
                with request.DataSet.getbuffer() as received:
                    spool.write(received)
            part = spool.finish()
        except OutOfResources as exc:
            spool.discard()
            log.warning("instance from %s refused: %s", peer.name, exc.message)
            return _OUT_OF_RESOURCES
        except (OSError, ValueError) as exc:
            spool.discard()
            log.error("instance from %s not spooled: %s", peer.name, exc)
            return _OUT_OF_RESOURCES
        try:
            asyncio.run_coroutine_threadsafe(sink.accept(part), loop).result(ours.timeout)
        except Exception as exc:  # the loop is gone or the session failed: not ours to keep
            part.discard()
            log.error("instance from %s not ingested: %s", peer.name, exc)
            return _PROCESSING_FAILURE
        return _STORED

    return on_store


def _copy_received(path: str, spool: Spool) -> None:
    """The data set of pynetdicom's receive file (behind its own File Meta) into ``spool``
    (file-backed reception, :mod:`app.dimse.receive`: never held whole in memory)."""
    with open(path, "rb", buffering=0) as received:
        head = received.read(_META_HEAD)
        if head[128:132] != b"DICM" or head[132:138] != b"\x02\x00\x00\x00UL":
            raise ValueError("unexpected layout of pynetdicom's receive file")
        received.seek(_META_HEAD + int.from_bytes(head[140:144], "little"))
        buffer = bytearray(1024 * 1024)
        view = memoryview(buffer)
        while size := received.readinto(buffer):
            spool.write(view[:size])
