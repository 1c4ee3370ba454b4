#!/usr/bin/env bash
# Two or more revisions of Lightbox against each other and Orthanc, in the same run.
#
#   bench/run.py overhead revisions REV [REV ...]
#
# Each revision is checked out (git worktree, detached) under $WORK and served from the project's
# .venv with that tree first on PYTHONPATH: its own code, today's installed dependencies. Every
# revision gets a fresh PostgreSQL database, filesystem blobs and $WORKERS workers; Orthanc gets
# a PostgreSQL index too ($TARGETS without orthanc leaves it out). Then, with every server
# started and idle but the one measured (load.py measures targets one after the other):
#   STOW   load.py stow of $DATASET (batch 10, $CLIENTS clients)
#   QIDO   load.py qido (-n 600, $ROUNDS rounds)
#   WADO   load.py wado: study metadata, series and study retrieve, instance, /frames/1 ($ROUNDS)
#   VIEWERS (optional, VIEWERS=K): K simulated OHIF viewers (viewers.py, a keep-alive pool
#          each) opening studies, against each revision in turn, $ROUNDS rounds alternating
# Results: $RESULTS/*-revisions-*.json (load.py report them) and the tables on stdout.
#
# LOADPY_TUNABLES (glibc tunables of the load generator; empty: glibc defaults).
# Settings: DATASET ($DATA/wado60: 20 studies of 3 x 20 instances, 512x512; made if missing),
# CLIENTS (4), ROUNDS (3), WORKERS (2), TARGETS (orthanc), BASE_PORT (8100), VIEWERS (0),
# VIEWER_SECONDS (20), WADO_OPS (the five above). Never run it beside
# a build or a test run (2 cores).
set -euo pipefail
source "$(dirname "$0")/common.sh"
[[ $# -ge 1 ]] || { sed -n '2,22p' "$0"; exit 2; }
WORK=${WORK:-$(mktemp -d /tmp/lightbox-revisions.XXXXXX)}
DATASET=${DATASET:-$DATA/wado60}
CLIENTS=${CLIENTS:-4}
ROUNDS=${ROUNDS:-3}
TARGETS=${TARGETS:-orthanc}
BASE_PORT=${BASE_PORT:-8100}
OR_PORT=${OR_PORT:-8042}
mkdir -p "$RESULTS" "$DATA"
[[ -f $DATASET/manifest.json ]] ||
  "$PY" "$SHARED/bench/gen_dataset.py" --out "$DATASET" --seed 11 --studies 20 --series 3 \
    --instances 20 --size 512 >/dev/null

VIEWERS=${VIEWERS:-0}
VIEWER_SECONDS=${VIEWER_SECONDS:-20}
TREES=()
NAMES=()
cleanup() {
  stop_all
  [[ $TARGETS == *orthanc* ]] && orthanc_stop "$WORK/orthanc"
  for tree in "${TREES[@]}"; do git -C "$REPO" worktree remove --force "$tree" 2>/dev/null || true; done
}
trap cleanup EXIT

T=(--results-dir "$RESULTS" --label revisions)
i=0
for rev in "$@"; do
  sha=$(git -C "$REPO" rev-parse --short "$rev")
  name="r$i-$sha" port=$((BASE_PORT + i)) tree="$WORK/tree-$sha" dir="$WORK/data-$sha"
  git -C "$REPO" worktree add --detach --force "$tree" "$sha" >/dev/null
  TREES+=("$tree")
  mkdir -p "$dir"
  fresh_pg_db "lb_rev_$i"
  url="$PG/lb_rev_$i"
  run_rev() { (cd "$tree" && env PYTHONPATH="$tree" LIGHTBOX_DATA_DIR="$dir" \
      LIGHTBOX_DATABASE_URL="$url" LIGHTBOX_LOG_LEVEL=warning "$@"); }
  run_rev "$PY" -m app db upgrade >/dev/null
  run_rev "$PY" -m app token create --subject bench --scope read --scope write --ttl 1d \
    > "$WORK/$name.token"
  (cd "$tree" && exec env PYTHONPATH="$tree" LIGHTBOX_DATA_DIR="$dir" LIGHTBOX_DATABASE_URL="$url" \
      LIGHTBOX_LOG_LEVEL=warning setsid "$PY" -m app serve --port "$port" \
      --workers "${WORKERS:-2}" > "$WORK/$name.log" 2>&1) &
  PIDS+=($!)
  wait_ready "$port" "$WORK/$name.log"
  T+=(--target "$name=http://127.0.0.1:$port/dicom-web" --bearer "$name=@$WORK/$name.token")
  NAMES+=("$name=$port")
  T+=(--pid "$name=$!,$(postmaster_pid)")
  i=$((i + 1))
done
if [[ $TARGETS == *orthanc* ]]; then
  orthanc_start "$WORK/orthanc" "$OR_PORT" orthanc_rev_bench
  T+=(--target "orthanc=http://127.0.0.1:$OR_PORT/dicom-web")
  T+=(--pid "orthanc=$(orthanc_pid "$WORK/orthanc"),$(postmaster_pid)")
fi

# load.py alone (never a server) keeps its large buffers: with glibc's default trim and mmap
# thresholds it pays 30-50% more CPU per byte for a 31 MB multipart body than for 10 MB (page
# faults as glibc hands its buffers back after each response) and, at 100% of a core, becomes
# what a study retrieve measures (bench/results/2026-12-06-structure.md)
LOADPY=(env GLIBC_TUNABLES=${LOADPY_TUNABLES-glibc.malloc.trim_threshold=1073741824:glibc.malloc.mmap_threshold=67108864} "$PY" "$SHARED/bench/load.py")
"${LOADPY[@]}" stow "${T[@]}" --dataset "$DATASET" --batch 10 -c "$CLIENTS"
"${LOADPY[@]}" qido "${T[@]}" --dataset "$DATASET" -n 600 -c "$CLIENTS" \
  --rounds "$ROUNDS"
"${LOADPY[@]}" wado "${T[@]}" --dataset "$DATASET" -c "$CLIENTS" \
  --ops "${WADO_OPS:-study_metadata,series,study,instance,frame}" --rounds "$ROUNDS"
if [[ $VIEWERS -gt 0 ]]; then
  out="$RESULTS/$(date +%Y%m%dT%H%M%S)-revisions-viewers.jsonl"
  for round in $(seq "$ROUNDS"); do
    for entry in "${NAMES[@]}"; do
      name=${entry%=*} port=${entry#*=}
      "$PY" "$LIB/viewers.py" --url "http://127.0.0.1:$port/dicom-web" --viewers "$VIEWERS" \
        --seconds "$VIEWER_SECONDS" --bearer "@$WORK/$name.token" --label "$name-round$round" \
        --processes 2 --out "$out"
    done
  done
fi
echo "results: $RESULTS (load.py report $RESULTS/*revisions*.json)"
