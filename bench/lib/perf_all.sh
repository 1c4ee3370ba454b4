#!/usr/bin/env bash
# Every latency/throughput target of issues 3-6 in one sitting, against indexes loaded beforehand.
#
#   bench/lib/perf_all.sh [section ...]  sections: qido1m qido100k overhead wado latency curl render
#                                        (default all)
#   bench/run.py query load | retrieve load | overhead wrk   run the sections of their kind
#
# Unlike wado_vs_orthanc.sh (which STOWs fresh datasets into fresh servers each run, an hour for
# Orthanc + PostgreSQL at 100,000 instances), this script only starts Lightbox on indexes that
# already hold the data, and measures a running Orthanc that holds the same datasets:
#
#   QIDO_DB   PostgreSQL database built by `run.py query build-index` (1,000,000 instances),
#             manifest $QIDO_DS
#   BENCH_DB  PostgreSQL database + blobs in $BENCH_DIR holding wado60, wado1000 and index100k
#             (the datasets of wado_vs_orthanc.sh, stored with load.py stow), also held by $ORTHANC
#   ORTHANC   DICOMweb URL of Orthanc + PostgreSQL with the same three datasets
#             (../shared/peer/peer_orthanc.sh start --index postgres ...)
#
# Lightbox runs with $WORKERS workers, auth + audit on (a token from its own issuer);
# the overhead section also starts a second Lightbox on the same index with auth and audit off
# and alternates the two (load.py --rounds). Results: bench/results/*.json plus stdout.
# Frame latency is also measured with wrk (Debian package wrk; lib/wrk_paths.lua), a client
# in C, when it is installed.
# Never run it beside a build or a test run (2 cores).
set -euo pipefail
source "$(dirname "$0")/common.sh"
QIDO_DB=${QIDO_DB:-lb_qido}
QIDO_DS=${QIDO_DS:-$DATA/qido1m}
BENCH_DB=${BENCH_DB:-lb_bench}
BENCH_DIR=${BENCH_DIR:-$DATA/lb}
ORTHANC=${ORTHANC:-http://127.0.0.1:8042/dicom-web}
WORKERS=${WORKERS:-2}
ROUNDS=${ROUNDS:-3}
ON_OFF_ROUNDS=${ON_OFF_ROUNDS:-5}  # wrk rounds of each side in the overhead section
OVERHEAD_WRK=${OVERHEAD_WRK:-qido1 qido4 frames4}  # the overhead section's wrk cases
OVERHEAD_LOADPY=${OVERHEAD_LOADPY:-1}  # 0: the overhead section runs wrk only
# 1: the overhead section's wrk rounds each start their server afresh (alone on the machine,
# warmed up 3 s), so that the spread between two starts of the same server (a few % of CPU per
# request, seen here) is sampled round by round instead of weighing on one side for a whole run
OVERHEAD_FRESH=${OVERHEAD_FRESH:-0}
WORK=$(mktemp -d /tmp/lightbox-perf.XXXXXX)
SECTIONS=${*:-qido1m qido100k overhead wado latency curl render}
mkdir -p "$RESULTS"
want() { [[ " $SECTIONS " == *" $1 "* ]]; }

wrk_round() {  # base_url bearer concurrency paths accept -> one 10 s wrk round (JSON line)
  # The line also gets the server's and PostgreSQL's CPU per request (wrk_rounds.py cpu:
  # "serve --port N" and its workers for a Lightbox, the Orthanc process otherwise) and, for a
  # Lightbox, how its workers shared the connections ("split", e.g. "2/2"; before
  # app/supervisor.py balanced them, uvicorn's workers accepted from one socket and one could
  # take them all).
  local base=$1 bearer=$2 c=$3 paths=$4 accept=$5 prefixed port server before split wrk_pid
  prefixed=$WORK/paths.$RANDOM
  sed "s#^#/${base#http://*/}#" "$paths" > "$prefixed"
  port=${base#http://*:} port=${port%%/*}
  server="serve --port $port"
  [[ $base == "$ORTHANC"* ]] && server="Orthanc "
  before=$("$PY" "$LIB/wrk_rounds.py" cpu "$server" "postgres:" ":steal")
  WRK_PATHS=$prefixed WRK_ACCEPT=$accept WRK_BEARER=$bearer \
      wrk -t1 -c"$c" -d10s -s "$LIB/wrk_paths.lua" "${base%/dicom-web*}" > "$WORK/wrk.out" &
  wrk_pid=$!
  sleep 2
  split=$(ss -tnpH state established "( sport = :$port )" | grep -o 'pid=[0-9]*' | sort |
      uniq -c | awk '{print $1}' | sort -rn | paste -sd/ -)
  wait "$wrk_pid"
  "$PY" "$LIB/wrk_rounds.py" cost "$(tail -n 1 "$WORK/wrk.out")" "$before" \
      "$("$PY" "$LIB/wrk_rounds.py" cpu "$server" "postgres:" ":steal")" --split "$split"
}
median_line() {  # rounds < JSON lines of wrk rounds -> the median one by p50 (field 5 after ':')
  sort -t: -k5 -n | sed -n "$(( ($1 + 1) / 2 ))p"
}
wrk_median() {  # label base_url bearer concurrency paths accept -> median of $ROUNDS rounds (JSON)
  local label=$1; shift
  for _ in $(seq "$ROUNDS"); do wrk_round "$@"; done | median_line "$ROUNDS" | sed "s/^/$label /"
}
wrk_on_off() {  # label concurrency paths accept base_on bearer_on base_off
  # $ON_OFF_ROUNDS rounds of each, alternating on, off, off, on, ... (as load.py --rounds
  # does), so a drift of the machine's speed over minutes weighs on both; every round is
  # printed, then the median of each side. OVERHEAD_FRESH=1: each round starts its server
  # afresh (fresh_server) and stops it after.
  local label=$1 c=$2 paths=$3 accept=$4 on=$5 bearer=$6 off=$7 r which rounds=$WORK/on_off.$RANDOM
  local base token
  for r in $(seq "$ON_OFF_ROUNDS"); do
    for which in $( ((r % 2)) && echo on off || echo off on); do
      if [[ $which == on ]]; then base=$on token=$bearer; else base=$off token=""; fi
      if [[ $OVERHEAD_FRESH == 1 ]]; then
        fresh_server "$which" "$base" "$token" "$c" "$paths" "$accept"
      fi
      wrk_round "$base" "$token" "$c" "$paths" "$accept" | sed "s/^/$which /" | tee -a "$rounds" |
          sed "s/^/  $label round $r /"
      if [[ $OVERHEAD_FRESH == 1 ]]; then stop_all; fi
    done
  done
  for which in on off; do
    grep "^$which " "$rounds" | cut -d' ' -f2- | median_line "$ON_OFF_ROUNDS" |
        sed "s/^/$label $which  /"
  done
  "$PY" "$LIB/wrk_rounds.py" split "$label" "$rounds"  # only rounds of the same split compare
}
fresh_server() {  # on|off base_url bearer concurrency paths accept -> started alone, warmed up 3 s
  local port=${2#http://*:}
  port=${port%%/*}
  if [[ $1 == on ]]; then lb_serve fresh_on "$port" "$PG/$BENCH_DB" "$BENCH_DIR"
  else lb_serve fresh_off "$port" "$PG/$BENCH_DB" "$BENCH_DIR" "${OFF_ENV[@]}"; fi
  sed "s#^#/${2#http://*/}#" "$5" > "$WORK/warm.paths"
  WRK_PATHS=$WORK/warm.paths WRK_ACCEPT=$6 WRK_BEARER=$3 \
      wrk -t1 -c"$4" -d3s -s "$LIB/wrk_paths.lua" "${2%/dicom-web*}" > /dev/null
}
wrk_paths() {  # kind (frames|qido) -> a file of request paths under the DICOMweb root
  local out=$WORK/$1.paths
  [[ -s $out ]] || "$PY" "$LIB/wrk_rounds.py" paths "$1" "$DATA" > "$out"
  echo "$out"
}
wrk_frames() {  # label base_url bearer concurrency
  wrk_median "$1" "$2" "$3" "$4" "$(wrk_paths frames)" "$FRAME_ACCEPT"
}

start() {  # name port db data_dir [env...] -> a Lightbox on that database of $PG, ready
  local name=$1 port=$2 db=$3 dir=$4; shift 4
  lb_serve "$name" "$port" "$PG/$db" "$dir" "$@"
}
trap stop_all EXIT

# one signing key for every Lightbox of the run: the token works on all of them
mkdir -p "$WORK/qido"
LIGHTBOX_DATA_DIR=$BENCH_DIR "$LB" token create --subject bench --scope read --scope write \
    --ttl 1d > "$WORK/token.txt"
cp -r "$BENCH_DIR/auth" "$WORK/qido/auth"
BEARER=(--bearer "lightbox=@$WORK/token.txt")
OFF_ENV=(LIGHTBOX_AUTH__ENABLED=false LIGHTBOX_AUTH__AUDIT_ENABLED=false)

if want qido1m; then
  echo "=== QIDO-RS, 1,000,000 instances ($QIDO_DB) ==="
  start qido 8080 "$QIDO_DB" "$WORK/qido"
  T=(--target lightbox=http://127.0.0.1:8080/dicom-web "${BEARER[@]}" --results-dir "$RESULTS")
  for c in 1 4; do
    "$PY" "$SHARED/bench/load.py" qido "${T[@]}" --dataset "$QIDO_DS" -c $c --rounds "$ROUNDS" \
        --label "qido1m-c$c"
  done
  "$PY" "$LIB/qido_wildcard.py" --url http://127.0.0.1:8080/dicom-web --dataset "$QIDO_DS" \
      --requests 200 --bearer "@$WORK/token.txt"
  stop_all
fi

if want qido100k || want overhead || want wado || want latency || want curl || want render; then
  start lightbox 8000 "$BENCH_DB" "$BENCH_DIR"
fi
LBT=(--target lightbox=http://127.0.0.1:8000/dicom-web "${BEARER[@]}")
ORT=(--target orthanc="$ORTHANC")

if want qido100k; then
  echo "=== QIDO-RS, Lightbox vs Orthanc, same 100,000-instance dataset ==="
  for c in 1 4; do
    "$PY" "$SHARED/bench/load.py" qido "${LBT[@]}" "${ORT[@]}" --results-dir "$RESULTS" \
        --dataset "$DATA/index100k" -c $c --rounds "$ROUNDS" --label "qido100k-vs-orthanc-c$c"
  done
fi

if want overhead; then
  echo "=== auth + audit overhead (same index, on vs off, alternating rounds) ==="
  start open 8001 "$BENCH_DB" "$BENCH_DIR" "${OFF_ENV[@]}"
  OT=(--target on=http://127.0.0.1:8000/dicom-web --bearer "on=@$WORK/token.txt"
      --target off=http://127.0.0.1:8001/dicom-web --results-dir "$RESULTS")
  if [[ $OVERHEAD_LOADPY == 1 ]]; then
    for c in 1 4; do
      "$PY" "$SHARED/bench/load.py" qido "${OT[@]}" --dataset "$DATA/index100k" -c $c \
          --rounds "$ROUNDS" --label "overhead-qido-c$c"
    done
    "$PY" "$SHARED/bench/load.py" wado "${OT[@]}" --dataset "$DATA/wado60" -c 4 --ops frame \
        --rounds "$ROUNDS" --label overhead-frames-c4
  fi
  if command -v wrk >/dev/null; then
    TOKEN=$(cat "$WORK/token.txt")
    ON=http://127.0.0.1:8000/dicom-web OFF=http://127.0.0.1:8001/dicom-web
    if [[ $OVERHEAD_FRESH == 1 ]]; then stop_all; fi  # each round starts its own server
    for case in $OVERHEAD_WRK; do
      case $case in
        qido1|qido4) wrk_on_off "overhead qido c${case#qido}" "${case#qido}" "$(wrk_paths qido)" \
            application/dicom+json $ON "$TOKEN" $OFF ;;
        frames4) wrk_on_off "overhead frames c4" 4 "$(wrk_paths frames)" "$FRAME_ACCEPT" \
            $ON "$TOKEN" $OFF ;;
        *) echo "unknown OVERHEAD_WRK case: $case"; exit 2 ;;
      esac
    done
    # the sections after this one use the Lightbox on port 8000
    if [[ $OVERHEAD_FRESH == 1 ]]; then start lightbox 8000 "$BENCH_DB" "$BENCH_DIR"; fi
  fi
  kill -TERM -- "-$(cat "$WORK/open.pid")" 2>/dev/null || true
fi

if want wado; then
  echo "=== WADO-RS, Lightbox vs Orthanc (index of 100,000+ instances) ==="
  W=("${LBT[@]}" "${ORT[@]}" --results-dir "$RESULTS" -c 4 --rounds "$ROUNDS")
  "$PY" "$SHARED/bench/load.py" wado "${W[@]}" --dataset "$DATA/wado60" \
      --ops study_metadata,series,study,instance,frame --label wado60
  "$PY" "$SHARED/bench/load.py" wado "${W[@]}" --dataset "$DATA/wado1000" \
      --ops series_metadata --label wado1000
fi

if want latency; then
  # latency.py reads and discards the body: load.py parses every JSON answer in Python,
  # which on two cores makes a 3 MB series /metadata answer client-bound
  echo "=== GET latency, body discarded (latency.py), Lightbox vs Orthanc ==="
  urls() {  # dataset kind base -> --url arguments (kind: series-metadata study-metadata frame)
    "$PY" - "$@" <<'PYEOF'
import json, sys
ds, kind, base = sys.argv[1:]
seen, out = set(), []
for line in open(f"{ds}/instances.jsonl"):
    d = json.loads(line)
    if kind == "series-metadata":
        key, path = d["series_uid"], f"studies/{d['study_uid']}/series/{d['series_uid']}/metadata"
    elif kind == "study-metadata":
        key, path = d["study_uid"], f"studies/{d['study_uid']}/metadata"
    else:
        key = d["sop_uid"]
        path = f"studies/{d['study_uid']}/series/{d['series_uid']}/instances/{key}/frames/1"
    if key not in seen and len(out) < 300:
        seen.add(key)
        out += ["--url", f"{base}/{path}"]
print("\n".join(out))
PYEOF
  }
  lat() {  # label dataset kind accept concurrency requests
    local label=$1 ds=$2 kind=$3 accept=$4 c=$5 n=$6 name base bearer
    for name in lightbox orthanc; do
      base=$ORTHANC bearer=()
      [[ $name == lightbox ]] && base=http://127.0.0.1:8000/dicom-web bearer=(--bearer "@$WORK/token.txt")
      mapfile -t U < <(urls "$ds" "$kind" "$base")
      printf '%-34s %-9s ' "$label" "$name"
      "$PY" "$LIB/latency.py" "${U[@]}" --accept "$accept" --concurrency "$c" \
          --requests "$n" --max-seconds 90 "${bearer[@]}" | tail -n 1
    done
  }
  lat "series metadata 1000 inst, c1" "$DATA/wado1000" series-metadata application/dicom+json 1 100
  lat "study metadata 60 inst, c1" "$DATA/wado60" study-metadata application/dicom+json 1 200
  lat "frames/1 512x512x16, c4" "$DATA/wado60" frame "$FRAME_ACCEPT" 4 1200
  lat "frames/1 512x512x16, c1" "$DATA/wado60" frame "$FRAME_ACCEPT" 1 600
  # the same frames with a client written in C: on two cores the Python client above takes
  # as much CPU per request as the server, so this is closer to the server's own latency
  if command -v wrk >/dev/null; then
    echo "--- frames/1 with wrk (-t1, 10 s, $ROUNDS rounds each; the median round by p50) ---"
    for c in 4 1; do
      wrk_frames "frames c$c lightbox" http://127.0.0.1:8000/dicom-web "$(cat "$WORK/token.txt")" $c
      wrk_frames "frames c$c orthanc" "$ORTHANC" "" $c
    done
  fi
fi

if want curl; then
  echo "=== one curl stream of a whole 60-instance study (median of 7) ==="
  STUDY=$("$PY" -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["study_uid"])' \
      "$DATA/wado60/instances.jsonl")
  ACCEPT='multipart/related; type="application/dicom"; transfer-syntax=*'
  speed() {  # url [auth header...] -> median MB/s of 7 runs (one warm-up)
    local url=$1; shift
    for i in $(seq 8); do
      curl -s -o /dev/null "$@" -H "Accept: $ACCEPT" -w '%{speed_download}\n' "$url"
    done | tail -n 7 | sort -n | awk '{ v[NR] = $1 } END { printf "%.0f MB/s (min %.0f, max %.0f)\n", v[4] / 1e6, v[1] / 1e6, v[7] / 1e6 }'
  }
  AUTH=(-H "Authorization: Bearer $(cat "$WORK/token.txt")")
  echo "lightbox: $(speed "http://127.0.0.1:8000/dicom-web/studies/$STUDY" "${AUTH[@]}")"
  echo "orthanc:  $(speed "$ORTHANC/studies/$STUDY")"
  if command -v nginx >/dev/null; then
    mkdir -p "$WORK/nginx/www"  # the same bytes as a static file
    curl -s -o "$WORK/nginx/www/study" "${AUTH[@]}" -H "Accept: $ACCEPT" \
        "http://127.0.0.1:8000/dicom-web/studies/$STUDY"
    chmod a+rx "$WORK"
    "$LIB/nginx_static.sh" "$WORK/nginx" 8088 & NGINX=$!
    for _ in $(seq 50); do curl -fs -o /dev/null http://127.0.0.1:8088/study && break; sleep 0.1; done
    echo "nginx:    $(speed http://127.0.0.1:8088/study)"
    kill "$NGINX"
  fi
fi

if want render; then
  echo "=== /rendered and thumbnails, Lightbox vs Orthanc ==="
  "$PY" "$LIB/render_vs_orthanc.py" --target lightbox=http://127.0.0.1:8000/dicom-web \
      --target "orthanc=$ORTHANC" --bearer "lightbox=@$WORK/token.txt" --results "$RESULTS"
fi
echo "results: $RESULTS"
