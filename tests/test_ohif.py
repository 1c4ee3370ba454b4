"""``app.ohif``: what is installed is found again (or nothing, when the record is broken), and
an installed build is made to load its files from /viewer/. (Fetching from the npm registry
runs in tests/browser/test_ohif.py, with ``lightbox viewer install``.)"""

import json
from pathlib import Path

from app import ohif


def test_a_broken_record_is_no_build(tmp_path: Path) -> None:
    root = ohif.viewer_root(tmp_path)
    root.mkdir(parents=True)
    assert ohif.installed(tmp_path) is None
    (root / ohif.CURRENT).write_text("{not json")
    assert ohif.installed(tmp_path) is None
    (root / ohif.CURRENT).write_text(json.dumps({"version": "../../etc", "integrity": "x"}))
    assert ohif.installed(tmp_path) is None
    (root / ohif.CURRENT).write_text(json.dumps({"version": "1.0.0", "integrity": "x"}))
    assert ohif.installed(tmp_path) is None  # recorded, but no dist/index.html
    (root / "1.0.0" / "dist").mkdir(parents=True)
    (root / "1.0.0" / "dist" / "index.html").write_text("<html></html>")
    found = ohif.installed(tmp_path)
    assert found is not None
    assert found.version == "1.0.0"


def test_a_build_is_served_under_a_prefix(tmp_path: Path) -> None:
    (tmp_path / "app.bundle.1.js").write_text('x;__webpack_require__.p = "/";y')
    (tmp_path / "worker.bundle.2.js").write_text('__webpack_require__.p = "/";')
    (tmp_path / "chunk.3.js").write_text("nothing to change")
    (tmp_path / "app.bundle.css").write_text("a{src:url(/f.woff2)}b{src:url(/g.woff2)}")
    assert ohif.serve_under(tmp_path, "/viewer/") == 3
    assert (tmp_path / "app.bundle.1.js").read_text() == 'x;__webpack_require__.p = "/viewer/";y'
    assert (tmp_path / "chunk.3.js").read_text() == "nothing to change"
    css = (tmp_path / "app.bundle.css").read_text()
    assert css == "a{src:url(/viewer/f.woff2)}b{src:url(/viewer/g.woff2)}"
    assert ohif.serve_under(tmp_path, "/viewer/") == 0  # once only
    assert (tmp_path / "app.bundle.css").read_text() == css
    assert not list(tmp_path.glob("*.tmp"))


def test_the_pinned_version_has_its_integrity() -> None:
    assert ohif.VERSION in ohif.PINNED
    assert ohif.expected_integrity(ohif.VERSION) == (ohif.PINNED[ohif.VERSION], True)
    assert ohif.expected_integrity("0.0.1", "sha512-given") == ("sha512-given", True)
