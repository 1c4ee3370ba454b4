# Sourced by the benchmark scripts of bench/lib: where things are, and the servers they start
# and stop (Lightbox, Orthanc through the shared peer script, PostgreSQL databases).
# Every server is started in a process group of its own (setsid) so that stopping it stops
# its workers too.
LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH=$(dirname "$LIB")
REPO=$(dirname "$BENCH")
SHARED=${SHARED:-$REPO/../shared}
PY=$REPO/.venv/bin/python
LB=$REPO/.venv/bin/lightbox
DATA=${DATA:-/work/bench-data}
RESULTS=${RESULTS:-$BENCH/results}
PG=postgresql+asyncpg://postgres@127.0.0.1:5432
FRAME_ACCEPT='multipart/related; type="application/octet-stream"; transfer-syntax=*'

psql_admin() { psql -h 127.0.0.1 -U postgres -d postgres -qAt -c "$1"; }
postmaster_pid() { head -1 "$(psql_admin 'SHOW data_directory')/postmaster.pid"; }

fresh_pg_db() {  # name [owner] -> an empty database of that name
  psql_admin "DROP DATABASE IF EXISTS $1 WITH (FORCE)"
  if [[ -n ${2:-} ]]; then
    psql_admin "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='$2') THEN CREATE ROLE $2 LOGIN PASSWORD '$2'; END IF; END\$\$"
    psql_admin "CREATE DATABASE $1 OWNER $2"
  else
    psql_admin "CREATE DATABASE $1"
  fi
}

wait_ready() {  # port log -> returns once /readyz answers, exits 1 after 30 s
  for _ in $(seq 150); do curl -fs -o /dev/null "http://127.0.0.1:$1/readyz" && return; sleep 0.2; done
  echo "the server on port $1 did not start"; cat "$2"; exit 1
}

stop_group() {  # pgid -> TERM, up to 10 s to finish, then KILL
  local pgid=$1
  [[ -n $pgid ]] || return 0
  kill -TERM -- "-$pgid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 -- "-$pgid" 2>/dev/null || return 0; sleep 0.2; done
  kill -KILL -- "-$pgid" 2>/dev/null || true
}

orthanc_start() {  # workdir port [pg_database] -> Orthanc (PostgreSQL index if a database is named)
  local dir=$1 port=$2 extra=()
  if [[ -n ${3:-} ]]; then
    fresh_pg_db "$3" dwbench
    extra=(--index postgres --pg-dsn "postgresql://dwbench:dwbench@127.0.0.1:5432/$3")
  fi
  rm -rf "$dir"
  "$SHARED/peer/peer_orthanc.sh" start --workdir "$dir" --http-port "$port" --no-dicom "${extra[@]}" \
    | tee "$dir.env" | grep -E '^(BASE_URL|PID)=' >/dev/null
}
orthanc_stop() { "$SHARED/peer/peer_orthanc.sh" stop --workdir "$1" --purge >/dev/null 2>&1 || true; }
orthanc_pid() { grep '^PID=' "$1.env" | cut -d= -f2; }  # workdir -> Orthanc's process id

PIDS=()
lb_serve() {  # name port database_url data_dir [VAR=value ...] -> a Lightbox, ready to serve
  # $WORKERS workers, logs in $WORK/name.log, process group id in $WORK/name.pid and in PIDS;
  # no DIMSE listener unless asked (LIGHTBOX_DIMSE__ENABLED=true): several servers of one run
  # would all want port 11112
  local name=$1 port=$2 url=$3 dir=$4; shift 4
  (cd "$REPO" && exec env LIGHTBOX_DATA_DIR="$dir" LIGHTBOX_DATABASE_URL="$url" \
      LIGHTBOX_LOG_LEVEL=warning LIGHTBOX_DIMSE__ENABLED=false "$@" setsid "$LB" serve --port "$port" --workers "${WORKERS:-2}" \
      > "$WORK/$name.log" 2>&1) &
  PIDS+=($!)
  echo $! > "$WORK/$name.pid"
  wait_ready "$port" "$WORK/$name.log"
}
stop_all() {  # every server lb_serve started: TERM all, a second, then KILL what is left
  for pid in "${PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  sleep 1
  for pid in "${PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  PIDS=()
}
