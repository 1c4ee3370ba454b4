#!/usr/bin/env bash
# WADO-RS: Lightbox against Orthanc in the same run (issue 4, Performance).
#
#   bench/run.py retrieve vs-orthanc [full|tiny]
#
# Prepares three datasets with the shared generator (kept under $DATA between runs):
#   wado60    studies of 3 series x 20 instances (60 per study), 512x512 16-bit: study /metadata,
#             series retrieve, single-stream curl of a whole study, /frames/1 (512x512)
#   wado1000  a 1,000-instance series (64x64): series /metadata
#   index100k 100,000 small instances (64x64), stored before the /frames run so the index holds
#             100,000+ instances
# then, per index back end in $DBS (postgres, sqlite): a fresh Lightbox (filesystem blobs,
# $LIGHTBOX_BENCH_WORKERS uvicorn workers) and a fresh Orthanc (same index back end), STOW of the
# datasets into both, and `load.py wado` against both side by side; finally one `curl` stream of a
# whole 60-instance study from each, and from nginx serving the same bytes as a static file.
# `tiny` uses a few instances only: it checks the script, it measures nothing.
#
# Needs: the shared harness (../shared/bench), Debian packages orthanc orthanc-dicomweb
# orthanc-postgresql nginx, PostgreSQL on 127.0.0.1:5432 (user postgres, trust), and `make`
# having built .venv. Results: bench/results/*-wado-*.json (load.py) and a summary on stdout.
# Never run it beside a build or a test run (2 cores).
set -euo pipefail
source "$(dirname "$0")/common.sh"
SCALE=${1:-full}
WORK=${WORK:-$(mktemp -d /tmp/lightbox-wado-bench.XXXXXX)}
WORKERS=${LIGHTBOX_BENCH_WORKERS:-2}
TARGETS=${TARGETS:-lightbox,orthanc}
DBS=${DBS:-postgres sqlite}
CLIENTS=${CLIENTS:-4}
LB_PORT=${LB_PORT:-8000}
OR_PORT=${OR_PORT:-8042}
NGINX_PORT=${NGINX_PORT:-8088}
want() { [[ ",$TARGETS," == *",$1,"* ]]; }
mkdir -p "$RESULTS" "$DATA"

if [[ $SCALE == tiny ]]; then
  SUFFIX=-tiny
  GEN60=(--studies 2 --series 3 --instances 2 --size 64)
  GEN1000=(--studies 1 --series 1 --instances 10 --size 64)
  GEN100K=(--studies 5 --series 2 --instances 2 --size 64)
  WADO_SCALE=0.05
else
  SUFFIX=
  GEN60=(--studies 20 --series 3 --instances 20 --size 512)
  GEN1000=(--studies 2 --series 1 --instances 1000 --size 64)
  GEN100K=(--studies 5000 --series 2 --instances 10 --size 64)
  WADO_SCALE=1
fi
DS60=$DATA/wado60$SUFFIX
DS1000=$DATA/wado1000$SUFFIX
DS100K=$DATA/index100k$SUFFIX
gen() {  # dir seed args... (distinct seeds: distinct UIDs across the datasets)
  local out=$1 seed=$2; shift 2
  [[ -f $out/manifest.json ]] && return
  "$PY" "$SHARED/bench/gen_dataset.py" --out "$out" --force --seed "$seed" "$@" >/dev/null
}
gen "$DS60" 11 "${GEN60[@]}"
gen "$DS1000" 12 "${GEN1000[@]}"
gen "$DS100K" 13 "${GEN100K[@]}"

start_lightbox() {  # db
  rm -rf "$WORK/lightbox"; mkdir -p "$WORK/lightbox"
  export LIGHTBOX_DATA_DIR=$WORK/lightbox LIGHTBOX_LOG_LEVEL=warning
  if [[ $1 == postgres ]]; then
    fresh_pg_db lightbox_wado_bench
    export LIGHTBOX_DATABASE_URL=$PG/lightbox_wado_bench
  else
    export LIGHTBOX_DATABASE_URL=sqlite+aiosqlite:///$WORK/lightbox/index.db
  fi
  (cd "$REPO" && "$LB" db upgrade >/dev/null)
  # auth is on by default: the harness sends a token from the embedded issuer
  (cd "$REPO" && "$LB" token create --subject bench --scope read --scope write \
      --ttl 1d > "$WORK/token.txt")
  (cd "$REPO" && exec setsid "$LB" serve --port "$LB_PORT" --workers "$WORKERS" \
      > "$WORK/lightbox.log" 2>&1) &
  echo $! > "$WORK/lightbox.pid"
  wait_ready "$LB_PORT" "$WORK/lightbox.log"
}
stop_lightbox() { stop_group "$(cat "$WORK/lightbox.pid" 2>/dev/null)"; }

start_orthanc() {  # db
  if [[ $1 == postgres ]]; then orthanc_start "$WORK/orthanc" "$OR_PORT" orthanc_wado_bench
  else orthanc_start "$WORK/orthanc" "$OR_PORT"; fi
}
stop_orthanc() { orthanc_stop "$WORK/orthanc"; }

NGINX_PID=
stop_nginx() { [[ -n $NGINX_PID ]] && kill "$NGINX_PID" 2>/dev/null; NGINX_PID=; }
trap 'stop_lightbox; stop_orthanc; stop_nginx' EXIT

curl_stream() {  # label url out [token file] -> "label bytes seconds MB/s"
  local accept='multipart/related; type="application/dicom"; transfer-syntax=*' auth=()
  [[ -n ${4:-} ]] && auth=(-H "Authorization: Bearer $(cat "$4")")
  curl -s -o "$3" "${auth[@]}" -H "Accept: $accept" -w "%{size_download} %{time_total} %{http_code}" "$2" \
    | awk -v l="$1" '{ printf "%-24s HTTP %s %12d bytes %8.3f s %10.1f MB/s\n", l, $3, $1, $2, $1 / $2 / 1e6 }'
}

first_study() { "$PY" -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["study_uid"])' "$1/instances.jsonl"; }

for db in $DBS; do
  echo "=== index: $db ==="
  want lightbox && start_lightbox "$db"
  want orthanc && start_orthanc "$db"
  T=(--results-dir "$RESULTS" --label "wado-$db$SUFFIX")
  if want lightbox; then
    PIDS=$(cat "$WORK/lightbox.pid")
    [[ $db == postgres ]] && PIDS="$PIDS,$(postmaster_pid)"
    T+=(--target lightbox=http://127.0.0.1:$LB_PORT/dicom-web --pid "lightbox=$PIDS")
    T+=(--bearer "lightbox=@$WORK/token.txt")
  fi
  if want orthanc; then
    OPIDS=$(orthanc_pid "$WORK/orthanc")
    [[ $db == postgres ]] && OPIDS="$OPIDS,$(postmaster_pid)"
    T+=(--target orthanc=http://127.0.0.1:$OR_PORT/dicom-web --pid "orthanc=$OPIDS")
  fi

  "$PY" "$SHARED/bench/load.py" stow "${T[@]}" --dataset "$DS60" --batch 10 -c "$CLIENTS"
  "$PY" "$SHARED/bench/load.py" stow "${T[@]}" --dataset "$DS1000" --batch 50 -c "$CLIENTS"
  # study metadata (60 instances), series and study retrieve, instance, /frames/1 (small index)
  "$PY" "$SHARED/bench/load.py" wado "${T[@]}" --dataset "$DS60" --scale "$WADO_SCALE" \
      -c "$CLIENTS" --ops study_metadata,series,study,instance,frame --rounds 2
  # series metadata of the 1,000-instance series
  "$PY" "$SHARED/bench/load.py" wado "${T[@]}" --dataset "$DS1000" --scale "$WADO_SCALE" \
      -c "$CLIENTS" --ops series_metadata --rounds 2
  # /frames/1 of 512x512 16-bit instances with 100,000 more instances in the index
  "$PY" "$SHARED/bench/load.py" stow "${T[@]}" --dataset "$DS100K" --batch 50 -c "$CLIENTS"
  "$PY" "$SHARED/bench/load.py" wado "${T[@]}" --dataset "$DS60" --scale "$WADO_SCALE" \
      -c "$CLIENTS" --ops frame --rounds 2 --label "wado-frames-100k-$db$SUFFIX"

  # one curl stream of a whole 60-instance study, and nginx serving the same bytes
  STUDY=$(first_study "$DS60")
  echo "single stream, study $STUDY:"
  if want lightbox; then
    curl_stream "lightbox ($db)" "http://127.0.0.1:$LB_PORT/dicom-web/studies/$STUDY" "$WORK/study.body" \
      "$WORK/token.txt"
  fi
  if want orthanc; then
    curl_stream "orthanc ($db)" "http://127.0.0.1:$OR_PORT/dicom-web/studies/$STUDY" /dev/null
  fi
  if command -v nginx >/dev/null && [[ -s $WORK/study.body ]]; then
    mkdir -p "$WORK/nginx/www"
    cp "$WORK/study.body" "$WORK/nginx/www/study"
    chmod a+rx "$WORK"
    "$LIB/nginx_static.sh" "$WORK/nginx" "$NGINX_PORT" & NGINX_PID=$!
    for _ in $(seq 50); do curl -fs -o /dev/null http://127.0.0.1:$NGINX_PORT/study && break; sleep 0.1; done
    curl_stream "nginx (static file)" http://127.0.0.1:$NGINX_PORT/study /dev/null
    stop_nginx
  fi
  stop_lightbox; stop_orthanc
done
echo "results: $RESULTS (load.py report $RESULTS/*wado*.json)"
