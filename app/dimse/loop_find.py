"""A C-FIND served on the services' event loop (DIMSE-07..10): the association on the loop
(:mod:`app.dimse.loop_association`) hands each C-FIND-RQ, identifier read, to a
:class:`FindOperation`.

The query is pynetdicom's path's (:mod:`app.dimse.find`): the identifier read into the query
QIDO-RS runs (:func:`~app.dimse.find.read_request`), one service call streaming the matches page
by page (:meth:`QueryService.find <app.services.query.QueryService.find>`), each match encoded
from the stored DICOM JSON (:func:`~app.dicom.dimse_query.match_identifier`), the same statuses,
ErrorComments and audit row. What differs is the transport, which is where pynetdicom's path
spent its time: no thread hops, the command set of a Pending response encoded once per query,
each match one P-DATA-TF PDU holding both PDVs (command and identifier; fragmented only past the
peer's maximum PDU), written to the socket 16 at a time. The server's CPU per response fell from
0.53 ms to 0.12 ms, and a study-level C-FIND on a 1,000,000-instance index from 369 ms to 25 ms
at p95 (bench/results/2026-12-08-17-cfind-loop.md).

C-CANCEL (PS3.4 §C.4.1.2.3): the association keeps reading PDUs while the matches stream, and a
C-CANCEL-RQ naming this message sets :attr:`FindOperation.cancelled`. It is checked before each
match. After the first match and then every :data:`YIELD_EVERY` the queued responses are written
and the operation yields to the loop, so that a C-CANCEL already on the socket is read, and
waits for the socket's buffer to drain, which bounds what a slow peer makes us hold. A peer that
reads nothing for ``dimse.network_timeout`` has its association aborted.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from io import BytesIO
from typing import Final

from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.multival import MultiValue

from app.dicom.dimse_query import (
    SOP_CLASSES,
    SYNTAXES,
    FindRequest,
    InvalidIdentifier,
    Model,
    match_identifier,
)
from app.dicom.status import QueryRetrieveStatus
from app.dimse.context import DimseContext, Peer
from app.dimse.find import MAX_DETAIL, read_request, search_detail, search_row
from app.dimse.statuses import error_status
from app.dimse.upper_layer import p_data_fragments, p_data_pair, response_command
from app.services.audit import AuditRecord
from app.services.metrics import dimse_operation, status_category

__all__ = ["FindOperation"]

log = logging.getLogger(__name__)

_C_FIND_RSP: Final = 0x8020
#: matches queued between two writes, two looks at the socket (a C-CANCEL) and two waits for
#: its buffer to drain
YIELD_EVERY: Final = 16


def _read(identifier: bytes, transfer_syntax: str, model: Model) -> FindRequest:
    """:func:`~app.dimse.find.read_request` of the identifier's bytes (its values decoded when
    the parse reads them)."""
    implicit, little = SYNTAXES[transfer_syntax]
    try:
        dataset = read_dataset(BytesIO(identifier), implicit, little)
    except Exception:  # bytes read_dataset cannot even walk
        raise InvalidIdentifier("the identifier cannot be decoded") from None
    return read_request(dataset, model)


@dataclass(slots=True)
class FindOperation:
    """One C-FIND-RQ of an association on the loop, answered by :meth:`run`."""

    ctx: DimseContext
    peer: Peer
    writer: asyncio.StreamWriter
    #: the presentation context: its ID, abstract syntax (the SOP class) and transfer syntax
    context_id: int
    sop_class: str
    transfer_syntax: str
    message_id: int
    #: the audit request id, ``<association>:<message id>``
    request_id: str
    #: the peer's maximum PDU (0: no limit)
    peer_max_pdu: int
    #: queues an audit row (the association's, which never raises)
    record: Callable[[AuditRecord], Awaitable[None]]
    #: set by a C-CANCEL-RQ naming :attr:`message_id`
    cancelled: bool = False
    #: set when the association ends (A-ABORT, a dropped connection, the server stopping):
    #: the search stops at its next match and sends nothing more
    ended: bool = False
    #: the command sets of this C-FIND's responses without an ErrorComment, by status and
    #: whether a data set follows: the Pending ones differ by nothing else
    _commands: dict[tuple[int, bool], bytes] = field(default_factory=dict)
    #: PDUs queued, written by :meth:`_flush`
    _out: list[bytes] = field(default_factory=list)

    async def run(self, identifier: bytes) -> None:
        """Answer the C-FIND: Pending responses, then the final one, then the audit row.

        A peer that stops reading for ``dimse.network_timeout`` is aborted (the association's
        reader then ends); a dropped connection ends the operation quietly."""
        started = time.perf_counter()
        model, _ = SOP_CLASSES[self.sop_class]
        request: FindRequest | None = None
        count = 0
        #: the detail of a refused identifier; a search's is made at the end
        detail = ""
        final: int | Dataset = QueryRetrieveStatus.SUCCESS
        try:
            try:
                request = _read(identifier, self.transfer_syntax, model)
            except InvalidIdentifier as exc:
                final = error_status(exc, operation="C-FIND")
                detail = f"C-FIND {model}: {exc}"
            if request is not None and not self.ended:
                final, count = await self._stream(request)
            if self.ended:
                final = QueryRetrieveStatus.UNABLE_TO_PROCESS
                detail = f"{detail}; association ended"
            else:
                await self._send(final, None)
        except TimeoutError:
            log.info("DIMSE %s (%s): not reading C-FIND responses; aborting", self.peer.ae_title,
                     self.request_id)  # fmt: skip
            # no A-ABORT: a peer that reads nothing would not read it either
            self.writer.transport.abort()
            final, detail = QueryRetrieveStatus.UNABLE_TO_PROCESS, f"{detail}; peer not reading"
        except ConnectionError:
            final, detail = QueryRetrieveStatus.UNABLE_TO_PROCESS, f"{detail}; peer went away"
        except asyncio.CancelledError:  # the association ended (A-ABORT, server stopping)
            final, detail = QueryRetrieveStatus.UNABLE_TO_PROCESS, f"{detail}; association ended"
            await self._finish(final, detail, request, count, started)
            raise
        await self._finish(final, detail, request, count, started)

    async def _finish(
        self,
        final: int | Dataset,
        detail: str,
        request: FindRequest | None,
        count: int,
        started: float,
    ) -> None:
        """The C-FIND's metric and audit row (:func:`~app.dimse.find.search_row`)."""
        took = time.perf_counter() - started
        status = int(final.Status) if isinstance(final, Dataset) else int(final)
        dimse_operation("C-FIND", status_category(status), took)
        if request is not None:  # what befell the search, kept when the keys are cut short
            detail = search_detail(request, took)[: MAX_DETAIL - len(detail)] + detail
        await self.record(search_row(self.peer, self.request_id, status, detail, request, count))

    async def _stream(self, request: FindRequest) -> tuple[int | Dataset, int]:
        """Send each match as a Pending response: the final status and the number sent."""
        ctx = self.ctx
        matches = ctx.services.query.find(request.query, ctx.settings.public_base_url or "")
        ae_title = ctx.settings.dimse.ae_title
        count = 0
        try:
            async for obj in matches:
                if self.cancelled or self.ended:
                    return QueryRetrieveStatus.CANCEL, count
                encoded = match_identifier(obj, request, ae_title, self.transfer_syntax)
                self._queue(request.pending_status, encoded)
                count += 1
                if count % YIELD_EVERY == 1:  # the first match at once, then every 16th
                    await self._flush()
        except (TimeoutError, ConnectionError):
            raise
        except Exception as exc:
            return error_status(exc, operation="C-FIND"), count
        finally:
            await matches.aclose()
        return (
            QueryRetrieveStatus.CANCEL if self.cancelled else QueryRetrieveStatus.SUCCESS
        ), count

    async def _send(self, status: int | Dataset, identifier: bytes | None) -> None:
        """One response, after those queued."""
        self._queue(status, identifier)
        await self._flush()

    def _queue(self, status: int | Dataset, identifier: bytes | None) -> None:
        """A response's command set (and identifier) as P-DATA-TF PDUs, queued."""
        command = self._command(status, identifier is not None)
        cid, limit = self.context_id, self.peer_max_pdu
        if identifier is not None and (not limit or 12 + len(command) + len(identifier) <= limit):
            self._out.append(p_data_pair(cid, command, identifier))
        else:
            self._out.extend(p_data_fragments(cid, True, command, limit))
            if identifier is not None:
                self._out.extend(p_data_fragments(cid, False, identifier, limit))

    async def _flush(self) -> None:
        """Write the queued PDUs in one go (one system call for up to 16 matches: with a call per
        match, py-spy put a quarter of a search's samples in the transport's write; the CPU per
        response measured did not move beyond the noise, 0.11-0.12 ms), let the loop read the
        socket (a C-CANCEL), and wait for the socket's buffer to drain."""
        out, self._out = self._out, []
        self.writer.write(b"".join(out))
        await asyncio.sleep(0)
        async with asyncio.timeout(self.ctx.settings.dimse.network_timeout):
            await self.writer.drain()

    def _command(self, status: int | Dataset, data_set: bool) -> bytes:
        if not isinstance(status, Dataset):
            found = self._commands.get((status, data_set))
            if found is None:
                found = self._commands[status, data_set] = response_command(
                    _C_FIND_RSP, self.message_id, self.sop_class, status, data_set=data_set
                )
            return found
        offending = status.get("OffendingElement")
        if offending is None:
            offending = []
        elif not isinstance(offending, list | MultiValue):
            offending = [offending]
        return response_command(
            _C_FIND_RSP,
            self.message_id,
            self.sop_class,
            int(status.Status),
            comment=status.get("ErrorComment"),
            offending=tuple(int(tag) for tag in offending),
        )
