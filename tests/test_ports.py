"""tests/ports.py: each pytest-xdist worker hands out ports of its own share of a range."""

import pytest

from tests.ports import STRIDE, PortRange


@pytest.mark.parametrize("worker", ["gw0", "gw1", "gw3"])
def test_a_range_hands_out_only_this_workers_share(
    worker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    share = int(worker[2:]) * STRIDE
    ports = PortRange(range(14100, 14110))
    handed = [ports() for _ in range(12)]
    assert all(14100 + share <= port < 14110 + share for port in handed), handed
    # in turn, not the same port again and again
    assert len(set(handed[:10])) == 10
