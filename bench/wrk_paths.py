"""The request paths of the wrk benchmarks (perf_all.sh's overhead section, simultaneous.sh),
one per line, under the DICOMweb root unless a prefix is given.

    .venv/bin/python bench/wrk_paths.py frames|qido DATA_DIR [--prefix /dicom-web]

frames: frame 1 of the first 300 of wado60's 512x512 16-bit instances. qido: 400 searches of
index100k (shuffled with a fixed seed), in turn by PatientID, by StudyInstanceUID, a study's
series and a series' instances.
"""

import argparse
import json
import random


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["frames", "qido"])
    parser.add_argument("data", help="the directory holding wado60/ and index100k/")
    parser.add_argument("--prefix", default="", help="put before every path, e.g. /dicom-web")
    args = parser.parse_args()
    if args.kind == "frames":
        with open(f"{args.data}/wado60/instances.jsonl") as lines:
            for n, line in enumerate(lines):
                if n == 300:
                    break
                d = json.loads(line)
                print(
                    f"{args.prefix}/studies/{d['study_uid']}/series/{d['series_uid']}"
                    f"/instances/{d['sop_uid']}/frames/1"
                )
        return
    with open(f"{args.data}/index100k/instances.jsonl") as lines:
        rows = [json.loads(line) for line in lines]
    random.Random(5).shuffle(rows)
    for n, d in enumerate(rows[:400]):
        searches = [
            f"/studies?PatientID={d['patient_id']}",
            f"/studies?StudyInstanceUID={d['study_uid']}",
            f"/studies/{d['study_uid']}/series",
            f"/studies/{d['study_uid']}/series/{d['series_uid']}/instances",
        ]
        print(args.prefix + searches[n % 4])


if __name__ == "__main__":
    main()
