"""On/off comparison of wrk rounds that had the same worker split (perf_all.sh's ``wrk_on_off``).

    .venv/bin/python bench/wrk_by_split.py LABEL ROUNDS_FILE

ROUNDS_FILE holds one line per round, ``on {json}`` or ``off {json}``, each JSON carrying wrk's
figures and ``split`` (how the server's workers shared the connections, e.g. ``2/2``). When
uvicorn's workers accepted from one socket, a round could find all its connections on one worker
and serve a quarter fewer requests whatever the mode, so only rounds of the same split compare
(``lightbox serve`` now balances them: every round is 2/2 at four connections). Prints, per
split that both sides had, the medians of p50, p95 and req/s and the on/off difference, and the
median share of CPU time the hypervisor took from the machine on each side (``steal_pct``).
"""

import json
import statistics
import sys
from collections import defaultdict
from typing import Any


def compare(label: str, lines: list[str]) -> list[str]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        which, _, payload = line.strip().partition(" ")
        if which in ("on", "off") and payload:
            result = json.loads(payload)
            groups[(which, str(result.get("split", "?")))].append(result)
    out = []
    for split in sorted({split for _, split in groups}):
        on, off = groups.get(("on", split), []), groups.get(("off", split), [])
        if not on or not off:
            out.append(f"{label} split {split}: rounds on {len(on)}, off {len(off)} (no pair)")
            continue
        cells = []
        for key, name in (("p50_ms", "p50"), ("p95_ms", "p95"), ("rps", "req/s")):
            a = statistics.median(r[key] for r in on)
            b = statistics.median(r[key] for r in off)
            cells.append(f"{name} {a:g} vs {b:g} ({a / b - 1:+.0%})")
        if all("steal_pct" in r for r in on + off):  # a slowed machine shows here
            a = statistics.median(r["steal_pct"] for r in on)
            b = statistics.median(r["steal_pct"] for r in off)
            cells.append(f"CPU stolen {a:g}% vs {b:g}%")
        out.append(f"{label} split {split} ({len(on)} on, {len(off)} off): " + ", ".join(cells))
    return out


def main() -> None:
    label, path = sys.argv[1:3]
    with open(path) as rounds:
        print("\n".join(compare(label, rounds.readlines())))


if __name__ == "__main__":
    main()
