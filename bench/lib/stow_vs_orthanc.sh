#!/usr/bin/env bash
# STOW-RS throughput: Lightbox (PostgreSQL + filesystem, production uvicorn settings) against
# Orthanc (PostgreSQL index) and Orthanc (SQLite index), in the same run, fresh stores each round.
#
#   bench/run.py ingest stow DATASET BATCH CLIENTS [ROUNDS] [MAX_INSTANCES]
#
# Each round: fresh Lightbox (2 workers, LIGHTBOX_BENCH_WORKERS), fresh Orthanc + PostgreSQL,
# fresh Orthanc + SQLite; `load.py stow` against all three (server and PostgreSQL CPU metered),
# then `load.py verify` (VERIFY=0 skips it). TARGETS=lightbox,orthanc_pg,orthanc_sqlite picks
# the peers (Orthanc + PostgreSQL takes ~20 min for 100k small instances).
# Needs: the shared harness (../shared/bench), Debian packages orthanc orthanc-dicomweb
# orthanc-postgresql, PostgreSQL on 127.0.0.1:5432 (user postgres, trust), and `make` having built
# .venv. Results land in bench/results/ (JSON from load.py) and a summary on stdout.
set -euo pipefail
source "$(dirname "$0")/common.sh"
DATASET=${1:?dataset dir}
BATCH=${2:-10}
CLIENTS=${3:-4}
ROUNDS=${4:-1}
MAX=${5:-0}
WORK=${WORK:-$(mktemp -d /tmp/lightbox-bench.XXXXXX)}
WORKERS=${LIGHTBOX_BENCH_WORKERS:-2}
TARGETS=${TARGETS:-lightbox,orthanc_pg,orthanc_sqlite}
want() { [[ ",$TARGETS," == *",$1,"* ]]; }
mkdir -p "$RESULTS"

start_lightbox() {
  fresh_pg_db lightbox_bench
  rm -rf "$WORK/lightbox"; mkdir -p "$WORK/lightbox"
  export LIGHTBOX_DATABASE_URL=$PG/lightbox_bench
  export LIGHTBOX_DATA_DIR=$WORK/lightbox LIGHTBOX_LOG_LEVEL=warning
  (cd "$REPO" && "$LB" db upgrade >/dev/null)
  (cd "$REPO" && exec setsid "$LB" serve --port 8000 --workers "$WORKERS" \
      > "$WORK/lightbox.log" 2>&1) &
  echo $! > "$WORK/lightbox.pid"
  wait_ready 8000 "$WORK/lightbox.log"
}
stop_lightbox() { stop_group "$(cat "$WORK/lightbox.pid" 2>/dev/null)"; }
stop_servers() { stop_lightbox; orthanc_stop "$WORK/orthanc_pg"; orthanc_stop "$WORK/orthanc_sqlite"; }
trap stop_servers EXIT

for round in $(seq "$ROUNDS"); do
  start_lightbox
  want orthanc_pg && orthanc_start "$WORK/orthanc_pg" 8042 orthanc_bench
  want orthanc_sqlite && orthanc_start "$WORK/orthanc_sqlite" 8043
  PGPID=$(postmaster_pid)
  LPIDS=$(cat "$WORK/lightbox.pid")  # load.py meters the process and its descendants
  T=(--dataset "$DATASET" --results-dir "$RESULTS" --label "round$round"
     --target lightbox=http://127.0.0.1:8000/dicom-web --pid "lightbox=$LPIDS,$PGPID")
  if want orthanc_pg; then
    T+=(--target orthanc_pg=http://127.0.0.1:8042/dicom-web
        --pid "orthanc_pg=$(orthanc_pid "$WORK/orthanc_pg"),$PGPID")
  fi
  if want orthanc_sqlite; then
    T+=(--target orthanc_sqlite=http://127.0.0.1:8043/dicom-web
        --pid "orthanc_sqlite=$(orthanc_pid "$WORK/orthanc_sqlite")")
  fi
  LIMIT=()
  [[ $MAX -gt 0 ]] && LIMIT=(--max-instances "$MAX")
  "$PY" "$SHARED/bench/load.py" stow "${T[@]}" --batch "$BATCH" -c "$CLIENTS" "${LIMIT[@]}"
  VLIMIT=()
  [[ $MAX -gt 0 ]] && VLIMIT=(--instances-limit "$MAX")
  [[ ${VERIFY:-1} == 1 ]] && "$PY" "$SHARED/bench/load.py" verify "${T[@]}" "${VLIMIT[@]}"
  stop_servers
done
