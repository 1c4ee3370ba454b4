#!/usr/bin/env bash
# STOW-RS throughput: Lightbox (PostgreSQL + filesystem, production uvicorn settings) against
# Orthanc (PostgreSQL index) and Orthanc (SQLite index), in the same run, fresh stores each round.
#
#   bench/stow_vs_orthanc.sh DATASET BATCH CLIENTS [ROUNDS] [MAX_INSTANCES]
#
# Needs: the shared harness (../shared/bench), Debian packages orthanc orthanc-dicomweb
# orthanc-postgresql, PostgreSQL on 127.0.0.1:5432 (user postgres, trust), and `make` having built
# .venv. Results land in bench/results/ (JSON from load.py) and a summary on stdout.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
SHARED=${SHARED:-$REPO/../shared}
PY=$REPO/.venv/bin/python
DATASET=${1:?dataset dir}
BATCH=${2:-10}
CLIENTS=${3:-4}
ROUNDS=${4:-1}
MAX=${5:-0}
WORK=${WORK:-$(mktemp -d /tmp/lightbox-bench.XXXXXX)}
RESULTS=${RESULTS:-$HERE/results}
WORKERS=${LIGHTBOX_BENCH_WORKERS:-2}
# which peers to run beside Lightbox (Orthanc + PostgreSQL takes ~20 min for 100k small instances)
TARGETS=${TARGETS:-lightbox,orthanc_pg,orthanc_sqlite}
want() { [[ ",$TARGETS," == *",$1,"* ]]; }
mkdir -p "$RESULTS"

psql_admin() { psql -h 127.0.0.1 -U postgres -d postgres -qAt -c "$1"; }
postmaster_pid() { head -1 "$(psql_admin 'SHOW data_directory')/postmaster.pid"; }

start_lightbox() {
  psql_admin "DROP DATABASE IF EXISTS lightbox_bench WITH (FORCE)"
  psql_admin "CREATE DATABASE lightbox_bench"
  rm -rf "$WORK/lightbox"; mkdir -p "$WORK/lightbox"
  export LIGHTBOX_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/lightbox_bench
  export LIGHTBOX_DATA_DIR=$WORK/lightbox LIGHTBOX_LOG_LEVEL=warning
  (cd "$REPO" && .venv/bin/lightbox db upgrade >/dev/null)
  (cd "$REPO" && exec setsid .venv/bin/lightbox serve --port 8000 --workers "$WORKERS" \
      > "$WORK/lightbox.log" 2>&1) &
  echo $! > "$WORK/lightbox.pid"
  for _ in $(seq 100); do curl -fs -o /dev/null http://127.0.0.1:8000/readyz && return; sleep 0.2; done
  echo "lightbox did not start"; cat "$WORK/lightbox.log"; exit 1
}

stop_lightbox() {
  local pgid
  pgid=$(cat "$WORK/lightbox.pid" 2>/dev/null) || return 0
  kill -TERM -- "-$pgid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 -- "-$pgid" 2>/dev/null || return 0; sleep 0.2; done
  kill -KILL -- "-$pgid" 2>/dev/null || true
}

start_orthanc() {  # name port index
  local name=$1 port=$2 index=$3 extra=()
  if [[ $index == postgres ]]; then
    psql_admin "DROP DATABASE IF EXISTS orthanc_bench WITH (FORCE)"
    psql_admin "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='dwbench') THEN CREATE ROLE dwbench LOGIN PASSWORD 'dwbench'; END IF; END\$\$"
    psql_admin "CREATE DATABASE orthanc_bench OWNER dwbench"
    extra=(--index postgres --pg-dsn postgresql://dwbench:dwbench@127.0.0.1:5432/orthanc_bench)
  fi
  rm -rf "$WORK/$name"
  "$SHARED/peer/peer_orthanc.sh" start --workdir "$WORK/$name" --http-port "$port" --no-dicom "${extra[@]}" \
    | tee "$WORK/$name.env" | grep -E '^(BASE_URL|PID)=' >/dev/null
}

stop_orthanc() { "$SHARED/peer/peer_orthanc.sh" stop --workdir "$WORK/$1" --purge >/dev/null 2>&1 || true; }
pid_of() { grep '^PID=' "$WORK/$1.env" | cut -d= -f2; }

trap 'stop_lightbox; stop_orthanc orthanc_pg; stop_orthanc orthanc_sqlite' EXIT

for round in $(seq "$ROUNDS"); do
  start_lightbox
  want orthanc_pg && start_orthanc orthanc_pg 8042 postgres
  want orthanc_sqlite && start_orthanc orthanc_sqlite 8043 sqlite
  PGPID=$(postmaster_pid)
  LPIDS=$(cat "$WORK/lightbox.pid")  # load.py meters the process and its descendants
  T=(--dataset "$DATASET" --results-dir "$RESULTS" --label "round$round"
     --target lightbox=http://127.0.0.1:8000/dicom-web --pid "lightbox=$LPIDS,$PGPID")
  if want orthanc_pg; then
    T+=(--target orthanc_pg=http://127.0.0.1:8042/dicom-web --pid "orthanc_pg=$(pid_of orthanc_pg),$PGPID")
  fi
  if want orthanc_sqlite; then
    T+=(--target orthanc_sqlite=http://127.0.0.1:8043/dicom-web --pid "orthanc_sqlite=$(pid_of orthanc_sqlite)")
  fi
  LIMIT=()
  [[ $MAX -gt 0 ]] && LIMIT=(--max-instances "$MAX")
  "$PY" "$SHARED/bench/load.py" stow "${T[@]}" --batch "$BATCH" -c "$CLIENTS" "${LIMIT[@]}"
  VLIMIT=()
  [[ $MAX -gt 0 ]] && VLIMIT=(--instances-limit "$MAX")
  [[ ${VERIFY:-1} == 1 ]] && "$PY" "$SHARED/bench/load.py" verify "${T[@]}" "${VLIMIT[@]}"
  stop_lightbox; stop_orthanc orthanc_pg; stop_orthanc orthanc_sqlite
done
