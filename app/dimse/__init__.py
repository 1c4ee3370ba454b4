"""The DIMSE front end (classic DICOM networking), beside the HTTP one in ``app.api``.

The services are asynchronous and run on one event loop, in one thread, of the DIMSE process
(``app.dimse.bridge``). The port is the front door's (``app.dimse.front_door``), on that loop:
storage and search associations (C-STORE, C-FIND, C-ECHO: the volume) are served there as
tasks (``app.dimse.loop_association``); every other association is handed to pynetdicom, which runs
it in its own threads and calls our event handlers there, each handing its service call to the
loop and waiting for the result. So there is no event loop per association, the HTTP workers'
loops are never blocked (DIMSE runs in its own process), and every association shares one
database pool, one audit writer and the ingest group commit.
"""
