"""An association on the services' event loop: C-ECHO, C-STORE and C-FIND without pynetdicom's
threads (DIMSE-02..10; the front door, :mod:`app.dimse.front_door`, says which associations come
here).

Why
---
Under pynetdicom every association runs two threads (its socket reader and its state machine)
that hand each PDU and each message to each other through queues, and each C-STORE's handler
then hands its commit to the services' loop and waits. Profiled with ``storescu`` over four
associations (bench/results/2026-12-07-15-import-cstore.md) a 0.5 MB C-STORE cost ~22 ms of CPU
in the DIMSE process, a quarter of it in the kernel switching those threads, and the process
topped out at ~45 instances/s on one GIL. Here an association is one task on the loop the
services already run on: it reads PDUs from an asyncio stream, appends the data set's fragments
to the ingest spool as they come, and calls the group commit directly. C-FIND followed for the
same reason (pynetdicom's threads were most of a match's cost: :mod:`app.dimse.loop_find`).

What it does
------------
- negotiates the proposed contexts as pynetdicom does for us (:func:`negotiate`): a storage SOP
  class, Verification or a C-FIND SOP class in the first transfer syntax the requestor proposed
  among ours
  (:mod:`app.dimse.contexts`), anything else rejected alone (0x03), a context with no syntax of
  ours rejected (0x04);
- answers C-ECHO, and C-STORE exactly as :mod:`app.dimse.store` does (the same File Meta, ingest,
  group commit, statuses, Error Comments and audit rows), only after the durable commit;
- answers C-FIND as :mod:`app.dimse.find` does (:mod:`app.dimse.loop_find`): the matches stream
  from a task of their own while this one keeps reading PDUs, so that a C-CANCEL-RQ is seen;
  a message other than C-CANCEL waits until the C-FIND in progress has ended (a requestor
  negotiates one outstanding operation: no asynchronous operations window is accepted here);
- bounds what a peer makes us hold: a PDU no larger than we announced, a command set of
  :data:`~app.dimse.upper_layer.MAX_COMMAND_BYTES`, a data set no larger than the largest instance
  accepted (aborted past it, as :mod:`app.dimse.receive` does), a C-FIND identifier of
  :data:`MAX_IDENTIFIER_BYTES`, the spool's memory bound; and a peer silent while nothing is in
  progress is aborted after ``dimse.network_timeout``;
- ends on an A-RELEASE-RQ (answered), an A-ABORT or a dropped connection, and audits the
  association as :mod:`app.dimse.associations` does.

The blocking parts of a C-STORE (writing a large data set to the spool file, parsing it and
fsyncing the spooled blob) run in the loop's default executor, one hop per megabyte received and
one per instance, so the loop is never blocked by the disk.
"""

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Final

from app.dicom.dimse_query import SOP_CLASSES
from app.dicom.filemeta import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from app.dicom.status import Status
from app.dicom.uids import is_valid_uid
from app.dimse.audit import association_id, peer_row, peer_write_audit
from app.dimse.context import DimseContext, Peer
from app.dimse.contexts import VERIFICATION
from app.dimse.loop_find import FindOperation
from app.dimse.store import error_comment, file_meta, status_of, store_row
from app.dimse.upper_layer import (
    ABORT,
    HEADER,
    MAX_COMMAND_BYTES,
    P_DATA,
    RELEASE_RQ,
    AssociationRequest,
    ProtocolError,
    abort_pdu,
    associate_ac,
    decode_command,
    p_data_fragments,
    pdvs,
    release_rp,
    response_command,
    text,
    unsigned,
    us,
)
from app.errors import InstanceRejected, InvalidInstance, OutOfResources
from app.services.audit import AuditRecord, Outcome, WriteAudit
from app.services.group_commit import Announced
from app.services.ingest import InstanceOutcome, Prepared
from app.services.metrics import dimse_association, dimse_operation, status_category
from app.services.spool import Spool, SpooledPart

__all__ = ["LoopAssociation", "negotiate"]

log = logging.getLogger(__name__)

#: data set bytes gathered on the loop before they are handed to the spool in a worker thread
FLUSH_BYTES: Final = 1 << 20
#: when our max PDU setting is 0 (no limit): the largest PDU read all the same
UNLIMITED_PDU: Final = 16 << 20
#: the largest C-FIND identifier read (a few dozen keys are a few kB; pynetdicom had no bound)
MAX_IDENTIFIER_BYTES: Final = 1 << 20

_C_STORE_RQ: Final = 0x0001
_C_ECHO_RQ: Final = 0x0030
_C_FIND_RQ: Final = 0x0020
_C_CANCEL_RQ: Final = 0x0FFF
_NO_DATA_SET: Final = 0x0101
#: the command elements read (PS3.7 §E.1)
_SOP_CLASS: Final = 0x0002
_COMMAND_FIELD: Final = 0x0100
_MESSAGE_ID: Final = 0x0110
_RESPONDED_TO: Final = 0x0120
_DATA_SET_TYPE: Final = 0x0800
_SOP_INSTANCE: Final = 0x1000


def negotiate(
    request: AssociationRequest, supported: dict[str, tuple[str, ...]]
) -> list[tuple[int, int, str]]:
    """(context ID, result, transfer syntax) for each proposed context: the first transfer
    syntax the requestor proposed among those we support for its abstract syntax."""
    results = []
    for context_id, abstract, proposed in request.contexts:
        ours = supported.get(abstract)
        if ours is None:
            results.append((context_id, 0x03, proposed[0] if proposed else ""))
            continue
        chosen = next((ts for ts in proposed if ts in ours), None)
        if chosen is None:
            results.append((context_id, 0x04, proposed[0] if proposed else ""))
        else:
            results.append((context_id, 0x00, chosen))
    return results


@dataclass(slots=True)
class _Operation:
    """A C-STORE: what its response needs."""

    context_id: int
    message_id: int
    announced: Announced
    #: ``time.perf_counter()`` as its command arrived
    started: float


@dataclass(slots=True)
class _Query:
    """A C-FIND whose identifier is arriving."""

    operation: FindOperation
    identifier: bytearray = field(default_factory=bytearray)


@dataclass(slots=True)
class _Message(_Operation):
    """A C-STORE whose data set is arriving."""

    spool: Spool
    pending: bytearray = field(default_factory=bytearray)
    received: int = 0


class LoopAssociation:
    """One accepted association; :meth:`run` serves it until it ends."""

    def __init__(
        self,
        ctx: DimseContext,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: Peer,
        request: AssociationRequest,
    ) -> None:
        self.ctx = ctx
        self.peer = peer
        self.request = request
        self._reader = reader
        self._writer = writer
        settings = ctx.settings.dimse
        self._max_pdu = settings.max_pdu or UNLIMITED_PDU
        self._timeout = settings.network_timeout
        self._limit = ctx.settings.limits.max_instance_bytes
        #: accepted presentation contexts: ID -> (abstract syntax, transfer syntax)
        self._contexts: dict[int, tuple[str, str]] = {}
        self._command = bytearray()
        self._message: _Message | None = None
        self._query: _Query | None = None
        #: the C-FIND in progress: its operation and the task streaming its matches
        self._finding: tuple[FindOperation, asyncio.Task[None]] | None = None
        self.id = association_id(self)

    async def run(self, supported: dict[str, tuple[str, ...]]) -> None:
        """Accept the association, serve its messages, close it (never raises but on
        cancellation, after aborting the association)."""
        results = negotiate(self.request, supported)
        abstract = {cid: syntax for cid, syntax, _ in self.request.contexts}
        self._contexts = {cid: (abstract[cid], ts) for cid, result, ts in results if result == 0x00}
        self._writer.write(
            associate_ac(
                self.request,
                results,
                max_pdu=self.ctx.settings.dimse.max_pdu,
                implementation_uid=IMPLEMENTATION_CLASS_UID,
                implementation_version=IMPLEMENTATION_VERSION_NAME,
            )
        )
        dimse_association("accepted")
        rejected = len(results) - len(self._contexts)
        await self._audit(
            "association",
            Outcome.SUCCESS,
            request_id=self.id,
            count=len(self._contexts),
            detail=f"accepted: {len(self._contexts)} presentation contexts, {rejected} rejected",
        )
        ending = "aborted"
        try:
            ending = await self._serve()
        except ProtocolError as exc:
            log.warning("DIMSE %s (%s): %s; aborting", self.peer.ae_title, self.id, exc)
            self._writer.write(abort_pdu(2, 0x02))  # unrecognized PDU parameter
        except TimeoutError:
            log.info(
                "DIMSE %s (%s): silent for %.0f s; aborting",
                self.peer.ae_title,
                self.id,
                self._timeout,
            )
            self._writer.write(abort_pdu(2, 0x00))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the peer went away: its operation in progress is not acknowledged
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                self._writer.write(abort_pdu(2, 0x00))  # the server is stopping
            raise
        finally:
            await self._stop_finding()
            await self._discard()
            if ending == "released":
                dimse_association("released")
            else:
                dimse_association("aborted")
                await self._audit(
                    "association", Outcome.FAILURE, request_id=self.id, detail="aborted"
                )
            await self._close()

    async def _serve(self) -> str:
        """Read PDUs until the association ends: "released" or "aborted"."""
        reader = self._reader
        while True:
            try:
                async with asyncio.timeout(self._timeout):
                    header = await reader.readexactly(HEADER.size)
            except TimeoutError:
                if self._finding is None or self._finding[1].done():
                    raise
                continue  # the peer is reading our C-FIND responses, not writing
            kind, length = HEADER.unpack(header)
            if length > self._max_pdu + 6 or (kind != P_DATA and length > 65536):
                raise ProtocolError(f"a PDU of {length} bytes (type 0x{kind:02X})")
            async with asyncio.timeout(self._timeout):
                body = await reader.readexactly(length)
            if kind == P_DATA:
                await self._p_data(body)
            elif kind == RELEASE_RQ:
                if self._message is not None or self._query is not None or self._command:
                    raise ProtocolError("release requested in the middle of a message")
                await self._wait_finding()
                self._writer.write(release_rp())
                return "released"
            elif kind == ABORT:
                return "aborted"
            else:
                raise ProtocolError(f"unexpected PDU type 0x{kind:02X}")

    async def _p_data(self, body: bytes) -> None:
        for context_id, control, value in pdvs(body):
            if context_id not in self._contexts:
                raise ProtocolError(f"presentation context {context_id} was not accepted")
            if control & 0x01:
                if self._message is not None or self._query is not None:
                    raise ProtocolError("a command fragment in the middle of a data set")
                self._command += value
                if len(self._command) > MAX_COMMAND_BYTES:
                    raise ProtocolError("a command set larger than 64 KiB")
                if control & 0x02:
                    command, self._command = decode_command(self._command), bytearray()
                    await self._dispatch(context_id, command)
            elif self._query is not None:
                await self._identifier(context_id, control, value)
            else:
                message = self._message
                if message is None or context_id != message.context_id:
                    raise ProtocolError("a data set fragment no C-STORE announced")
                message.received += len(value)
                if message.received > self._limit:
                    await self._audit(
                        "store",
                        Outcome.FAILURE,
                        request_id=f"{self.id}:{message.message_id}",
                        detail=f"C-STORE data set larger than {self._limit} bytes: "
                        "association aborted",
                    )
                    raise ProtocolError(f"a data set larger than {self._limit} bytes")
                message.pending += value
                if control & 0x02:
                    self._message = None
                    await self._store(message)
                elif len(message.pending) >= FLUSH_BYTES:
                    chunk, message.pending = message.pending, bytearray()
                    await asyncio.to_thread(message.spool.write, chunk)

    async def _dispatch(self, context_id: int, command: dict[int, bytes]) -> None:
        if _COMMAND_FIELD not in command:
            raise ProtocolError("a command set without Command Field")
        field_ = unsigned(command[_COMMAND_FIELD])
        if field_ == _C_CANCEL_RQ:
            self._cancel(unsigned(command.get(_RESPONDED_TO, b"\0\0")))
            return
        if _MESSAGE_ID not in command:
            raise ProtocolError("a command set without Message ID")
        message_id = unsigned(command[_MESSAGE_ID])
        has_data = unsigned(command.get(_DATA_SET_TYPE, us(_NO_DATA_SET))) != _NO_DATA_SET
        sop_class = text(command.get(_SOP_CLASS, b""))
        await self._wait_finding()  # one operation at a time (the module docstring)
        abstract = self._contexts[context_id][0]
        if field_ == _C_FIND_RQ and abstract in SOP_CLASSES:
            if not has_data:
                raise ProtocolError("a C-FIND-RQ without an identifier")
            self._query = _Query(
                FindOperation(
                    self.ctx,
                    self.peer,
                    self._writer,
                    context_id,
                    abstract,
                    self._contexts[context_id][1],
                    message_id,
                    f"{self.id}:{message_id}",
                    self.request.max_pdu,
                    self._record,
                )
            )
            return
        if field_ == _C_ECHO_RQ and abstract == VERIFICATION:
            if has_data:
                raise ProtocolError("a C-ECHO-RQ with a data set")
            started = time.perf_counter()
            await self._audit(
                "echo",
                Outcome.SUCCESS,
                request_id=f"{self.id}:{message_id}",
                status=int(Status.SUCCESS),
                detail="C-ECHO",
            )
            self._respond(context_id, 0x8030, message_id, VERIFICATION, None, int(Status.SUCCESS))
            dimse_operation("C-ECHO", "success", time.perf_counter() - started)
            return
        if field_ != _C_STORE_RQ or abstract == VERIFICATION or abstract in SOP_CLASSES:
            raise ProtocolError(f"command 0x{field_:04X} on presentation context {context_id}")
        sop_uid = text(command.get(_SOP_INSTANCE, b""))
        started = time.perf_counter()
        if not has_data:
            outcome = InstanceOutcome(sop_class, sop_uid).refuse(
                InvalidInstance("the C-STORE-RQ announces no data set")
            )
            operation = _Operation(context_id, message_id, Announced(sop_class, sop_uid), started)
            await self._answer(operation, outcome)
            return
        syntax = self._contexts[context_id][1]
        spool = self.ctx.services.ingest.spool()
        message = _Message(context_id, message_id, Announced(sop_class, sop_uid), started, spool)
        if is_valid_uid(sop_class) and is_valid_uid(sop_uid):
            spool.write(file_meta(message.announced, syntax, self.peer.ae_title))
        self._message = message

    async def _identifier(self, context_id: int, control: int, value: memoryview) -> None:
        """A fragment of the C-FIND's identifier; the last one starts the search."""
        query = self._query
        assert query is not None
        if context_id != query.operation.context_id:
            raise ProtocolError("a data set fragment on another presentation context")
        query.identifier += value
        if len(query.identifier) > MAX_IDENTIFIER_BYTES:
            raise ProtocolError(f"a C-FIND identifier larger than {MAX_IDENTIFIER_BYTES} bytes")
        if control & 0x02:
            self._query = None
            operation = query.operation
            task = asyncio.create_task(
                operation.run(bytes(query.identifier)), name=f"c-find {operation.request_id}"
            )
            self._finding = (operation, task)

    def _cancel(self, message_id: int) -> None:
        """A C-CANCEL-RQ: the C-FIND it names stops before its next match (one already ended,
        or never asked, is not an error: the request may have crossed the final response)."""
        if self._finding is not None and self._finding[0].message_id == message_id:
            self._finding[0].cancelled = True

    async def _wait_finding(self) -> None:
        """Wait until the C-FIND in progress, if any, has sent its final response (one that
        failed unexpectedly, its answer perhaps half sent, aborts the association)."""
        finding, self._finding = self._finding, None
        if finding is None:
            return
        try:
            await finding[1]
        except Exception as exc:
            log.error("C-FIND %s failed: %r", finding[0].request_id, exc)
            raise ProtocolError("the C-FIND in progress failed") from exc
        if self._writer.transport.is_closing():  # it gave up on a peer that did not read
            raise ConnectionResetError("the association's connection was closed")

    async def _stop_finding(self) -> None:
        """The association is ending: stop the C-FIND in progress, if any, at its next match
        (so that it still writes its audit row; cancelled if it takes longer than a second)."""
        finding, self._finding = self._finding, None
        if finding is None or finding[1].done():
            return
        operation, task = finding
        operation.ended = True
        try:
            await asyncio.wait_for(asyncio.shield(task), 1)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        except Exception as exc:
            log.error("C-FIND %s failed: %r", operation.request_id, exc)

    async def _store(self, message: _Message) -> None:
        announced = message.announced
        sop_class, sop_uid = announced
        if not (is_valid_uid(sop_class) and is_valid_uid(sop_uid)):
            outcome = InstanceOutcome(None, None).refuse(
                InvalidInstance("the Affected SOP Class or Instance UID is not a valid UID")
            )
            message.spool.discard()
            await self._answer(message, outcome)
            return
        request = f"{self.id}:{message.message_id}"
        write = peer_write_audit(self.ctx, self.peer, request)
        services = self.ctx.services
        try:
            # the rest of the data set into the spool, then parsed and its blob fsynced: one
            # hop to a worker thread
            prepared = await asyncio.to_thread(_prepare, self.ctx, message, write)
        except InstanceRejected as exc:  # larger than the instance limit
            outcome = InstanceOutcome(sop_class, sop_uid).refuse(exc)
            await self._answer(message, outcome)
            return
        except OSError as exc:
            log.error("C-STORE data set could not be spooled: %s", exc)
            outcome = InstanceOutcome(sop_class, sop_uid).refuse(
                OutOfResources("the data set could not be received")
            )
            await self._answer(message, outcome)
            return
        try:
            outcome = await services.group_commit.submit(prepared)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("C-STORE failed")
            outcome = InstanceOutcome(sop_class, sop_uid).refuse(
                OutOfResources("the instance could not be stored")
            )
            await self._answer(message, outcome)
            return
        if write is not None:  # stands for the journal row committed with the instance
            supersedes = write.release()
            await self._record(
                store_row(self.peer, outcome, request_id=request, supersedes=supersedes)
            )
        self._respond_store(message, outcome)

    async def _answer(self, operation: _Operation, outcome: InstanceOutcome) -> None:
        """The response to a C-STORE refused before its commit, and its audit row."""
        request = f"{self.id}:{operation.message_id}"
        await self._record(store_row(self.peer, outcome, request_id=request))
        self._respond_store(operation, outcome)

    def _respond_store(self, operation: _Operation, outcome: InstanceOutcome) -> None:
        status = status_of(outcome)
        announced = operation.announced
        self._respond(
            operation.context_id,
            0x8001,
            operation.message_id,
            announced.sop_class_uid,
            announced.sop_uid,
            status,
            error_comment(outcome),
        )
        elapsed = time.perf_counter() - operation.started
        dimse_operation("C-STORE", status_category(status), elapsed)

    def _respond(
        self,
        context_id: int,
        command_field: int,
        message_id: int,
        sop_class: str,
        sop_uid: str | None,
        status: int,
        comment: str | None = None,
    ) -> None:
        command = response_command(
            command_field,
            message_id,
            _printable(sop_class),
            status,
            comment=comment,
            sop_uid=_printable(sop_uid) if sop_uid else None,
        )
        self._writer.writelines(p_data_fragments(context_id, True, command, self.request.max_pdu))

    async def _audit(self, action: str, outcome: str, **fields: object) -> None:
        """Queue an audit row of this association's peer."""
        await self._record(peer_row(self.peer, action, outcome, **fields))

    async def _record(self, row: AuditRecord) -> None:
        """Queue ``row`` (never raises: an answer does not depend on the audit queue)."""
        if not self.ctx.settings.auth.audit_enabled:
            return
        try:
            await self.ctx.services.audit.record(row)
        except Exception:
            log.exception("could not queue the audit row of a DIMSE %s", row.action)

    async def _discard(self) -> None:
        """Drop a data set cut off by the end of the association."""
        message, self._message = self._message, None
        if message is not None:
            await asyncio.to_thread(message.spool.discard)

    async def _close(self) -> None:
        writer = self._writer
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.drain(), 5)
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 5)


def _prepare(
    ctx: DimseContext, message: _Message, write: WriteAudit | None
) -> Prepared | InstanceOutcome:
    """In a worker thread: the last bytes into the spool (OutOfResources past the instance
    limit), then the group commit's parse and fsync."""
    spool = message.spool
    try:
        spool.write(message.pending)
        message.pending = bytearray()
        part: SpooledPart = spool.finish()
    except BaseException:
        spool.discard()
        raise
    return ctx.services.group_commit.prepare(part, announced=message.announced, audit=write)


def _printable(uid: str) -> str:
    """A UID echoed in a response, as ASCII (an invalid one is refused, but still named)."""
    return uid.encode("ascii", "replace").decode("ascii")[:64]
