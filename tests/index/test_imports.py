"""The import journal: a source is done for its destination, as long as it is unchanged."""

from pathlib import Path

from app.index.imports import ImportJournal


def test_done_per_destination_and_as_long_as_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "j" / "journal.sqlite"
    local = ImportJournal(path, "local:abc")
    remote = ImportJournal(path, "https://pacs/dicom-web")
    local.record([("/a/1.dcm", 100, 5), ("/a/b.zip!x", 900, 7)])
    local.record([])
    assert local.done("/a/1.dcm", 100, 5)
    assert local.done("/a/b.zip!x", 900, 7)
    assert not local.done("/a/1.dcm", 101, 5)  # changed since: imported again
    assert not local.done("/a/1.dcm", 100, 6)
    assert not remote.done("/a/1.dcm", 100, 5)  # another destination
    local.record([("/a/1.dcm", 101, 6)])
    assert local.done("/a/1.dcm", 101, 6)
    assert (local.count(), remote.count()) == (2, 0)
    local.close()
    remote.close()
    reopened = ImportJournal(path, "local:abc")
    assert reopened.done("/a/b.zip!x", 900, 7)
    reopened.close()
