"""``lightbox import``: folders, ZIP and tar archives and DICOMDIR media, read in place, stored
through the same ingest as STOW-RS (no HTTP hop), or sent to a remote Lightbox by STOW-RS.

The package's own names are the light ones (options, counters, the report), so that a parent
process that only walks and hands files out (:mod:`.processes`) stays small; the pipeline is in
:mod:`.pipeline`, every stage bounded, so memory does not grow with the tree:

1. :func:`~.sources.walk` streams what is found (a thread steps it; a queue of a few items);
2. ``jobs`` workers each read one file at a time in a thread (:class:`~.reading.Reader`: sniff,
   then spool the file or each archive member, hashed on the way);
3. each instance, parsed in the reader's thread, goes to the current
   :class:`~app.services.ingest.IngestSession` (committed in batches: the STOW-RS write
   protocol, duplicate and patient-conflict policies, and audit rows committed with the
   writes, the actor ``cli:<user>``); a session holds a chunk of instances and at most two
   finish at once, so its outcomes do not pile up;
4. when a session has finished, its outcomes are settled: stored sources recorded in the
   journal (:class:`~app.index.imports.ImportJournal`: a re-run skips them unread), refusals
   written to the report with their reasons, the counters moved on.

Nothing found is fatal: a file that is not DICOM, not readable, or refused by ingest is reported
and the import goes on. A run killed at any point loses nothing (every acknowledged instance is
committed) and duplicates nothing: what the journal does not list is sent again and stored once
(an identical re-send is a success that writes nothing).
"""

from app.services.imports.progress import ImportAborted, ImportOptions, ImportProgress, Settled
from app.services.imports.report import RefusalReport, RefusalWriter

__all__ = [
    "ImportAborted",
    "ImportOptions",
    "ImportProgress",
    "RefusalReport",
    "RefusalWriter",
    "Settled",
]
