"""Time ``app.dicom.parse.parse_instance`` over the files of generated data sets.

Usage (from the repository root)::

    .venv/bin/python bench/run.py ingest parse /work/bench-data/ds64 /work/bench-data/ds512b \\
        --count 500

For each data set directory (the ``instances.jsonl`` + files layout of
``../shared/bench/gen_dataset.py``) the first ``--count`` files are read into memory, then parsed
``--runs`` times; each run prints the mean milliseconds per instance and the last line the median.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: app

from app.dicom.parse import parse_instance


def load(dataset: Path, count: int) -> list[bytes]:
    """The bytes of the first ``count`` files listed in ``dataset/instances.jsonl``."""
    lines = (dataset / "instances.jsonl").read_text().splitlines()[:count]
    return [(dataset / json.loads(line)["path"]).read_bytes() for line in lines]


def time_once(files: list[bytes]) -> float:
    """Mean milliseconds per ``parse_instance`` call over ``files``."""
    start = time.perf_counter()
    for data in files:
        parse_instance(data)
    return 1000 * (time.perf_counter() - start) / len(files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "datasets",
        nargs="*",
        type=Path,
        default=[Path("/work/bench-data/ds64"), Path("/work/bench-data/ds512b")],
        help="data set directories holding instances.jsonl",
    )
    parser.add_argument("--count", type=int, default=500, help="files per data set")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per data set")
    args = parser.parse_args()
    for dataset in args.datasets:
        files = load(dataset, args.count)
        runs = [time_once(files) for _ in range(args.runs)]
        shown = " ".join(f"{ms:.3f}" for ms in runs)
        print(
            f"{dataset.name}: {len(files)} files, runs {shown} ms, median "
            f"{statistics.median(runs):.3f} ms per instance"
        )


if __name__ == "__main__":
    main()
