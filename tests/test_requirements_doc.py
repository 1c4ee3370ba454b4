"""docs/requirements.md cannot drift: it is what ``python -m tests.requirements_doc`` writes, it
lists every requirement id the code and the tests cite, and every module and test it names exists.
"""

import re

from tests.requirements_doc import CITATION as ID
from tests.requirements_doc import (
    DOC,
    GROUPS,
    NOT_YET,
    PREFIXES,
    REPO,
    REQUIREMENTS,
    citations,
    defined,
    expand,
    render,
)


def test_the_file_is_current() -> None:
    assert DOC.read_text() == render(), (
        "docs/requirements.md is stale: run `python -m tests.requirements_doc`"
    )


def test_every_cited_id_is_listed() -> None:
    cited = set(citations("app")) | set(citations("tests"))
    assert cited, "the scan found no citation at all"
    unknown = sorted(cited - set(REQUIREMENTS))
    assert not unknown, f"cited but not defined in tests/requirements_doc.py: {unknown}"
    text = DOC.read_text()
    assert all(f"| {rid} |" in text for rid in cited)


def test_ids_are_well_formed_and_unique() -> None:
    ids = [r.id for _, group in GROUPS for r in group]
    assert len(ids) == len(set(ids)), "an id is defined twice"
    for rid, requirement in REQUIREMENTS.items():
        assert rid == requirement.id
        assert rid.split("-")[0] in PREFIXES
        [match] = ID.finditer(rid)
        assert expand(match) == [rid]
        assert requirement.text
        assert requirement.section


def test_dimse_is_not_yet_implemented() -> None:
    rows = [line for line in DOC.read_text().splitlines() if line.startswith("| DIMSE-")]
    assert len(rows) == 14
    assert all(f"| {NOT_YET} |" in row for row in rows)


def test_every_named_module_and_test_exists() -> None:
    for requirement in REQUIREMENTS.values():
        for reference in (*requirement.modules, *requirement.tests):
            assert defined(reference), f"{requirement.id}: {reference} does not exist"
    named = set(re.findall(r"`((?:app|tests)/[\w/]+\.py)`", DOC.read_text()))
    assert named, "the document names no file"
    missing = sorted(n for n in named if not (REPO / n).is_file())
    assert not missing, f"docs/requirements.md names files that do not exist: {missing}"


def test_functions_named_per_file_exist() -> None:
    """In "`tests/x.py`: `test_a`, `test_b`", each test is defined in that file."""
    cell = re.compile(r"`(tests/[\w/]+\.py)`(?: \(file\))?: ((?:`\w+`(?:, )?)+)")
    pairs = [
        (path, name)
        for path, names in cell.findall(DOC.read_text())
        for name in re.findall(r"`(\w+)`", names)
    ]
    assert pairs
    undefined = [f"{p}::{n}" for p, n in pairs if not defined(f"{p}::{n}")]
    assert not undefined, f"tests named in docs/requirements.md that do not exist: {undefined}"


def test_a_range_or_list_cites_each_id() -> None:
    found = [
        rid for m in ID.finditer("see FRM-01/06, META-01..03 and CAP-02.") for rid in expand(m)
    ]
    assert found == ["FRM-01", "FRM-06", "META-01", "META-02", "META-03", "CAP-02"]
