"""The audit trail (GEN-10, DIMSE-14): who did what to which patient's images, and how it ended.

Every front end records through one :class:`AuditLog` (``services.audit.record(...)``): HTTP once
per request, DIMSE (later) once per association operation with the calling AE title as the actor.
``record`` only queues the event; one writer task commits queued events in batches. When the queue
is full, ``record`` waits (back-pressure): an event is never dropped silently. A batch that cannot
be written is retried until it is; if the log is closed while the database is down, the number of
events lost is logged as an error. One event the database refuses, while it takes others, cannot
hold the log (and, through back-pressure, every request) up for good: after a few failed attempts
the batch is narrowed down to it, and a failure row takes its place, the event itself going to the
error log (:meth:`AuditLog._narrowed`). With ``aggregate`` (the server's default), the reads of one
caller on one series that land in the same batch are written as one row that counts them
(:func:`aggregate`): a viewer paging through a series frame by frame leaves a row per batch,
not a row per frame.

Rows are append-only and hash-chained: ``hash = sha256(prev_hash || canonical content)``, with
``seq`` numbering the chain without gaps, so :meth:`AuditLog.verify` finds an edited, inserted or
removed row. Each batch takes the chain head under a lock (a PostgreSQL advisory lock across
processes; SQLite serialises writers), so concurrent writers keep one valid chain.

Writes: a row as durable as the write
-------------------------------------
A queued event dies with its process. For a read that is the price of cheap reads (below); for
a store or a delete it meant a write acknowledged, and kept, with no row saying who made it. So
a write's row is committed with the write:

1. Inside the index transaction that makes the write, the service adds the transaction's row to
   the *audit journal* (``audit_journal``, through the front end's :class:`WriteAudit`):
   unchained, one INSERT, no lock. A write is answered only after its commit (DESIGN.md §4), so
   an acknowledged write has its row, by construction; so does one that committed but was never
   answered (a crash in between).
2. The front end's own row for the request (HTTP: the middleware's, after the response) is
   queued as any other, naming the journal rows of the request (``AuditRecord.supersedes``).
   The writer deletes them in the transaction that appends that row to the chain: after a
   success the request's row says all they say (count, UIDs) and its status besides, so it
   stands for them; after a failure (the client went away once a batch had committed, an error
   after a commit) they are chained as rows of their own just before it. At every moment a
   committed write has its row in the journal or in the chain.
3. Journal rows whose request row never comes (the process died) are chained as they are, with
   no status (no answer was recorded): by the next server start (:meth:`AuditLog.recover`, rows
   older than the start), and by any writer once older than ``journal_grace`` (a replica that
   never comes back). A row is chained by the writer whose DELETE removed it, under the chain's
   lock, so never twice. This process's rows whose request is still running are never swept by
   age; another process's may be, when its request runs longer than the grace, or when a server
   starts while another replica is in the middle of a request: that request then leaves two rows
   (its journal row and its own), never none. A row chained late keeps the time of its commit,
   a little out of order in the chain (``seq`` orders the chain, not ``time``).

Why not straight into the chain in the write's transaction: each row hashes the one before, so
appending holds the chain head's lock until the commit. Held across the write's commit, it
serialises every ingest and delete commit with each other and with the batch writer, and each
commit's WAL flush waits for the previous one instead of sharing it (group commit). Measured on
PostgreSQL, 8 concurrent writers each committing a row and an audit row: 834 commits/s with the
unchained journal row, 167 with the chain lock taken in the transaction (the machine loaded by
other work; the ratio is the point). The journal costs a write transaction one INSERT and keeps
concurrent STOW commits independent.

What stays batched, and may be lost with the process in the linger before its batch commits:
reads (searches, retrieves, metadata, frames, renders), refused and failed requests that
committed nothing (401, 403, 4xx, 5xx), audit queries, capabilities. None changed anything a
crash could leave behind unexplained, and a row committed per read (a WAL flush per request) is
what the batching exists to avoid. A journal row is not covered by the hash chain until it is
chained (like a queued event, but durable): :meth:`AuditLog.verify` counts the rows waiting
(``pending``) apart from the chain's problems, and PostgreSQL refuses UPDATE on the journal.

The modules
-----------
:mod:`.records` the event a front end reports (:class:`AuditRecord`); :mod:`.journal` a write's
row committed with the write (:class:`WriteAudit`); :mod:`.chain` the hash chain (rows hashed,
the chain walked); :mod:`.aggregation` reads merged per batch; :mod:`.batches` deferred events
built, stand-ins for refused ones; :mod:`.writer` the queue and the batching writer
(:class:`AuditLog`); :mod:`.reading` the admin search, the export and the verification;
:mod:`.messages` rows as DICOM audit messages. Their SQL is in :mod:`app.index.audit`.
"""

from app.index.audit.events import AuditFilter
from app.services.audit.aggregation import AGGREGATED_ACTIONS, aggregate
from app.services.audit.chain import GENESIS, ChainReport
from app.services.audit.journal import WriteAudit
from app.services.audit.records import AuditRecord, Outcome
from app.services.audit.writer import AuditLog

__all__ = [
    "AGGREGATED_ACTIONS",
    "GENESIS",
    "AuditFilter",
    "AuditLog",
    "AuditRecord",
    "ChainReport",
    "Outcome",
    "WriteAudit",
    "aggregate",
]
