"""Run the property-based tests (tests/fuzz) with a much larger budget than the suite's.

Usage (from the repository root)::

    bench/run.py robustness fuzz                  # 5000 examples per property, 200 per API
                                                  # operation, SQLite, at most 30 minutes
    bench/run.py robustness fuzz --examples 20000 --api-examples 500 \\
        --databases sqlite,postgresql --budget 7200 --seed 1234
    bench/run.py robustness fuzz -- -k multipart  # anything after -- goes to pytest

The suite runs the same tests derandomized with about 100 examples each (the ``ci`` profile of
``tests/fuzz/conftest.py``); here the ``long`` profile draws fresh random examples, from
``--seed`` (printed, so a run can be repeated). A failure prints the smallest example found and
a ``@reproduce_failure`` blob. The run is stopped (its whole process group) once ``--budget``
seconds have passed; what failed until then has been printed.
"""

import argparse
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=5000, help="per property")
    parser.add_argument("--api-examples", type=int, default=200, help="per API operation")
    parser.add_argument("--databases", default="sqlite", help="of the API test, comma-separated")
    parser.add_argument("--budget", type=float, default=1800, help="wall seconds, at most")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default random)")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LIGHTBOX_FUZZ": "long",
        "LIGHTBOX_FUZZ_EXAMPLES": str(args.examples),
        "LIGHTBOX_FUZZ_API_EXAMPLES": str(args.api_examples),
        "LIGHTBOX_FUZZ_API_DATABASES": args.databases,
    }
    command = [
        *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
        *("--hypothesis-seed", str(seed), "--hypothesis-show-statistics"),
        *(args.pytest_args or ["tests/fuzz"]),
    ]
    print(f"seed {seed}; at most {args.budget:.0f} s: {' '.join(command)}", flush=True)
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    try:
        return process.wait(timeout=args.budget)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        print(f"stopped after {args.budget:.0f} s (the budget); failures so far are above")
        return 2


if __name__ == "__main__":
    sys.exit(main())
