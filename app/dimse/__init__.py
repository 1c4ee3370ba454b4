"""The DIMSE front end (classic DICOM networking), beside the HTTP one in ``app.api``.

pynetdicom runs each association in its own thread and calls our event handlers there. The
services are asynchronous and run on one event loop, in one thread, of the DIMSE process
(``app.dimse.bridge``): a handler hands its service call to that loop and waits for the result.
So there is no event loop per association, the HTTP workers' loops are never blocked (DIMSE runs
in its own process), and every association shares one database pool, one audit writer and the
ingest group commit.
"""
