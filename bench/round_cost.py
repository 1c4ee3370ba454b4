"""One wrk round's JSON line, completed with what it cost: CPU per request of the server and of
PostgreSQL, and the share of the machine's CPU time its hypervisor took meanwhile.

    .venv/bin/python bench/round_cost.py WRK_LINE BEFORE AFTER [--split S] [--prefix P]

BEFORE and AFTER are what ``bench/proc_cpu.py SERVER [postgres: [:steal]]`` printed around the
10 s round; their numbers, in that order, become ``server_ms_per_req``, ``pg_ms_per_req`` and
``steal_pct`` (as many as were read). ``--split`` adds how the server's workers shared the
connections; ``--prefix`` is put before the JSON (e.g. ``"round 3 on "``). Used by
``perf_all.sh`` and ``simultaneous.sh``.
"""

import argparse
import json
import os

#: the length of a wrk round (``wrk -d10s``)
ROUND_SECONDS = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("line", help="the JSON line of bench/wrk_paths.lua")
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--split", help="how the workers shared the connections, e.g. 2/2")
    parser.add_argument("--prefix", default="")
    args = parser.parse_args()
    result = json.loads(args.line)
    pairs = zip(args.after.split(), args.before.split(), strict=True)
    used = [float(a) - float(b) for a, b in pairs]
    requests = max(result["requests"], 1)
    for key, seconds in zip(("server_ms_per_req", "pg_ms_per_req"), used[:2], strict=False):
        result[key] = round(seconds * 1000 / requests, 3)
    if len(used) > 2:
        result["steal_pct"] = round(used[2] * 100 / (ROUND_SECONDS * (os.cpu_count() or 1)), 1)
    if args.split is not None:
        result["split"] = args.split
    print(args.prefix + json.dumps(result))


if __name__ == "__main__":
    main()
