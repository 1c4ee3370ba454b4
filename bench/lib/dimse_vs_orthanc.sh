#!/usr/bin/env bash
# DIMSE against Orthanc, in the same run (issue 21's performance targets).
#
#   bench/run.py dimse store DATASET [CLIENTS] [ROUNDS] [MAX_INSTANCES]
#   bench/run.py dimse move  DATASET [ROUNDS]          (DATASET: one 1,000-instance series, wado1000)
#   bench/run.py dimse find-vs-orthanc DATASET [REQUESTS]   (DATASET: what Orthanc can hold, find10k)
#
# store, each round: a fresh Lightbox (PostgreSQL + filesystem, DIMSE in serve's child process,
# LIGHTBOX_DIMSE__MAX_PDU=65536), a fresh Orthanc + PostgreSQL and a fresh Orthanc + SQLite; DCMTK
# storescu over CLIENTS concurrent associations (64 kB PDUs sent: --max-send-pdu 65536; each
# server receives up to what it advertises) into each; then a fresh Lightbox takes the same
# instances over STOW-RS (load.py stow, batch 10, CLIENTS clients) for the "share of our own
# STOW-RS rate" target; load.py verify checks over WADO-RS what arrived by C-STORE (0 missing,
# 0 corrupted). The peak RSS of the Lightbox server tree (supervisor, HTTP workers, DIMSE child)
# and of its DIMSE process alone are sampled every 0.2 s during the C-STORE.
# move, each round: the series is stored once into Lightbox and Orthanc + PostgreSQL (STOW-RS),
# then movescu moves it from each to a DCMTK storescp started here (files to a RAM-backed dir),
# wall time and MB/s per target.
# find-vs-orthanc: the data set is stored by STOW-RS into a fresh Lightbox (PostgreSQL) and a fresh
# Orthanc + PostgreSQL, then dimse_find.py sends both the same study-level C-FINDs over one
# association each (counts checked against the manifest), with each requestor of CLIENTS (default
# "wire pynetdicom": dimse_find.py's socket client, then pynetdicom's SCU). The 1,000,000-instance figure is
# dimse_find.py against a Lightbox on the qido1m index (no files, so no Orthanc can hold it).
# TARGETS=lightbox,orthanc_pg,orthanc_sqlite picks the peers; the shared harness, Debian's dcmtk,
# orthanc, orthanc-dicomweb, orthanc-postgresql and PostgreSQL on 127.0.0.1:5432 are needed.
set -euo pipefail
source "$(dirname "$0")/common.sh"
ACTION=${1:?store, move or find-vs-orthanc}
DATASET=${2:?dataset dir}
WORK=${WORK:-$(mktemp -d /tmp/lightbox-dimse.XXXXXX)}
WORKERS=${LIGHTBOX_BENCH_WORKERS:-2}
TARGETS=${TARGETS:-lightbox,orthanc_pg,orthanc_sqlite}
want() { [[ ",$TARGETS," == *",$1,"* ]]; }
mkdir -p "$RESULTS" "$WORK"
LB_DIMSE=11112
now() { date +%s.%N; }
LB_ENV=()  # more VAR=value settings for the Lightbox servers

start_lightbox() {  # name http_port database [dimse_port]
  fresh_pg_db "$3"
  rm -rf "${WORK:?}/$1"; mkdir -p "$WORK/$1"
  (cd "$REPO" && LIGHTBOX_DATABASE_URL=$PG/$3 LIGHTBOX_DATA_DIR=$WORK/$1 "$LB" db upgrade >/dev/null)
  lb_serve "$1" "$2" "$PG/$3" "$WORK/$1" LIGHTBOX_DIMSE__ENABLED=true LIGHTBOX_DIMSE__PORT="${4:-$LB_DIMSE}" \
    LIGHTBOX_DIMSE__MAX_PDU=65536 LIGHTBOX_AUTH__ENABLED=false "${LB_ENV[@]}"
  for _ in $(seq 100); do echoscu -aec LIGHTBOX 127.0.0.1 "${4:-$LB_DIMSE}" 2>/dev/null && return; sleep 0.2; done
  echo "Lightbox's DIMSE listener did not answer"; cat "$WORK/$1.log"; exit 1
}
orthanc_dimse_start() {  # workdir http_port dicom_port [pg_database] [--modality ...]
  local dir=$1 http=$2 dicom=$3 db=${4:-}; shift 4 || shift $#
  local extra=()
  if [[ -n $db ]]; then
    fresh_pg_db "$db" dwbench
    extra=(--index postgres --pg-dsn "postgresql://dwbench:dwbench@127.0.0.1:5432/$db")
  fi
  rm -rf "$dir"
  "$SHARED/peer/peer_orthanc.sh" start --workdir "$dir" --http-port "$http" --dicom-port "$dicom" \
    "${extra[@]}" "$@" | tee "$dir.env" | grep -E '^(BASE_URL|PID)=' >/dev/null
}
rss_sampler() {  # out ps-selector... -> writes the peak RSS (kB) of the selected processes to out
  # until killed (-g PGID: a process group; -p PID: one process)
  local out=$1 peak=0 now_kb; shift
  echo 0 > "$out"
  while :; do
    now_kb=$(ps -o rss= "$@" 2>/dev/null | awk '{s+=$1} END {print s+0}')
    (( now_kb > peak )) && peak=$now_kb && echo "$peak" > "$out"
    sleep 0.2
  done
}
stop_servers() {
  stop_all
  orthanc_stop "$WORK/orthanc_pg"; orthanc_stop "$WORK/orthanc_sqlite"
  [[ -n ${SCP_PID:-} ]] && kill "$SCP_PID" 2>/dev/null || true
}
trap stop_servers EXIT

store_into() {  # name aet port -> prints "instances seconds failures" after CLIENTS storescu
  local name=$1 aet=$2 port=$3 pids=() t0 t1 fails=0
  t0=$(now)
  for list in "$WORK"/files.*; do
    # shellcheck disable=SC2046 # one path per line, no spaces (gen_dataset's layout)
    storescu -aet BENCH -aec "$aet" --max-send-pdu 65536 -nh 127.0.0.1 "$port" $(cat "$list") \
      > "$WORK/storescu-$name-$(basename "$list").log" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || fails=$((fails + 1)); done
  t1=$(now)
  echo "$(cat "$WORK"/files.* | wc -l) $(echo "$t1 - $t0" | bc) $fails"
}

if [[ $ACTION == store ]]; then
  CLIENTS=${3:-4}; ROUNDS=${4:-1}; MAX=${5:-0}
  find "$DATASET/dicom" -name '*.dcm' | sort > "$WORK/all.txt"
  [[ $MAX -gt 0 ]] && head -n "$MAX" "$WORK/all.txt" > "$WORK/sel.txt" || cp "$WORK/all.txt" "$WORK/sel.txt"
  N=$(wc -l < "$WORK/sel.txt")
  rm -f "$WORK"/files.*; split -n "r/$CLIENTS" -d "$WORK/sel.txt" "$WORK/files."
  SUMMARY="$RESULTS/$(date +%Y%m%d-%H%M%S)-dimse-store.txt"
  echo "C-STORE of $N instances of $DATASET, $CLIENTS associations" | tee "$SUMMARY"
  for round in $(seq "$ROUNDS"); do
    start_lightbox lb_dimse 8000 lightbox_dimse
    LBPG=$(cat "$WORK/lb_dimse.pid")
    rss_sampler "$WORK/rss.kb" -g "$LBPG" & SAMPLER=$!
    # the DIMSE process alone (`lightbox dimse`, serve's child): what the associations cost
    DIMSE_PID=$(pgrep -g "$LBPG" -f 'app dimse' | head -n 1)
    rss_sampler "$WORK/rss-dimse.kb" -p "$DIMSE_PID" & DIMSE_SAMPLER=$!
    read -r n secs fails <<< "$(store_into lightbox LIGHTBOX $LB_DIMSE)"
    kill "$SAMPLER" "$DIMSE_SAMPLER" 2>/dev/null || true
    held=$(psql -h 127.0.0.1 -U postgres -d lightbox_dimse -qAt -c "SELECT count(*) FROM instance")
    echo "round $round lightbox_cstore: $n instances in $secs s = $(echo "scale=1; $n / $secs" | bc)/s, $held in the index, failed associations $fails, peak RSS $(( $(cat "$WORK/rss.kb") / 1024 )) MB (the DIMSE process $(( $(cat "$WORK/rss-dimse.kb") / 1024 )) MB)" | tee -a "$SUMMARY"
    if [[ ${VERIFY:-1} == 1 ]]; then
      VL=(); [[ $MAX -gt 0 ]] && VL=(--instances-limit "$MAX")
      "$PY" "$SHARED/bench/load.py" verify --dataset "$DATASET" --results-dir "$WORK/verify" \
        --target lightbox=http://127.0.0.1:8000/dicom-web "${VL[@]}" 2>&1 | tail -4 | tee -a "$SUMMARY"
    fi
    stop_all
    if want orthanc_pg; then
      orthanc_dimse_start "$WORK/orthanc_pg" 8042 4242 orthanc_dimse
      read -r n secs fails <<< "$(store_into orthanc_pg DWBENCH 4242)"
      echo "round $round orthanc_pg_cstore: $n instances in $secs s = $(echo "scale=1; $n / $secs" | bc)/s, failed associations $fails" | tee -a "$SUMMARY"
      orthanc_stop "$WORK/orthanc_pg"
    fi
    if want orthanc_sqlite; then
      orthanc_dimse_start "$WORK/orthanc_sqlite" 8043 4243 ""
      read -r n secs fails <<< "$(store_into orthanc_sqlite DWBENCH 4243)"
      echo "round $round orthanc_sqlite_cstore: $n instances in $secs s = $(echo "scale=1; $n / $secs" | bc)/s, failed associations $fails" | tee -a "$SUMMARY"
      orthanc_stop "$WORK/orthanc_sqlite"
    fi
    start_lightbox lb_stow 8001 lightbox_stow 11113
    LIMIT=(); [[ $MAX -gt 0 ]] && LIMIT=(--max-instances "$MAX")
    "$PY" "$SHARED/bench/load.py" stow --dataset "$DATASET" --results-dir "$WORK/stow" \
      --label "round$round" --target lightbox=http://127.0.0.1:8001/dicom-web --batch 10 \
      -c "$CLIENTS" "${LIMIT[@]}" > "$WORK/stow.out" 2>&1
    "$PY" - "$WORK/stow" "$round" <<'PY' | tee -a "$SUMMARY"
import json, pathlib, sys
path = sorted(pathlib.Path(sys.argv[1]).glob("*.json"))[-1]
s = json.loads(path.read_text())["results"]["lightbox"]["stow"]
print(f"round {sys.argv[2]} lightbox_stow: {s['instances_stored']} instances"
      f" in {s['wall_s']} s = {s['instances_per_s']}/s, failed {s['instances_failed']}")
PY
    stop_all
  done
  echo "summary: $SUMMARY"
elif [[ $ACTION == move ]]; then
  ROUNDS=${3:-1}
  SCP_DIR=${SCP_DIR:-/dev/shm/lightbox-dimse-scp}
  SERIES=$("$PY" -c "import json,sys; l=[json.loads(x) for x in open(sys.argv[1]+'/instances.jsonl')]; print(l[0]['series_uid'])" "$DATASET")
  COUNT=$("$PY" -c "import json,sys; print(sum(1 for x in open(sys.argv[1]+'/instances.jsonl') if json.loads(x)['series_uid']==sys.argv[2]))" "$DATASET" "$SERIES")
  STUDY=$("$PY" -c "import json,sys; l=[json.loads(x) for x in open(sys.argv[1]+'/instances.jsonl')]; print(l[0]['study_uid'])" "$DATASET")
  SUMMARY="$RESULTS/$(date +%Y%m%d-%H%M%S)-dimse-move.txt"
  echo "C-MOVE of series $SERIES ($COUNT instances) to storescp in $SCP_DIR" | tee "$SUMMARY"
  LB_ENV=('LIGHTBOX_DIMSE__REMOTE_AES=[{"ae_title":"BENCHSCP","host":"127.0.0.1","port":11119}]')
  start_lightbox lb_move 8000 lightbox_move
  # Orthanc answers C-MOVE only to a known caller (BENCHMOVE) and sends to a known destination
  orthanc_dimse_start "$WORK/orthanc_pg" 8042 4242 orthanc_move --modality benchscp=BENCHSCP@127.0.0.1:11119 \
    --modality benchmove=BENCHMOVE@127.0.0.1:11121
  "$PY" "$SHARED/bench/load.py" stow --dataset "$DATASET" --results-dir "$WORK/stow" \
    --target lightbox=http://127.0.0.1:8000/dicom-web --target orthanc_pg=http://127.0.0.1:8042/dicom-web \
    --batch 50 -c 2 > "$WORK/stow.out" 2>&1
  for round in $(seq "$ROUNDS"); do
    for target in lightbox:LIGHTBOX:$LB_DIMSE orthanc_pg:DWBENCH:4242; do
      IFS=: read -r name aet port <<< "$target"
      rm -rf "$SCP_DIR"; mkdir -p "$SCP_DIR"
      storescp -aet BENCHSCP --fork -od "$SCP_DIR" 11119 > "$WORK/storescp.log" 2>&1 & SCP_PID=$!
      sleep 0.5
      t0=$(now)
      movescu -S -aet BENCHMOVE -aec "$aet" -aem BENCHSCP -k QueryRetrieveLevel=SERIES \
        -k StudyInstanceUID="$STUDY" -k SeriesInstanceUID="$SERIES" 127.0.0.1 "$port" \
        > "$WORK/movescu-$name.log" 2>&1 || echo "movescu to $name failed (see $WORK/movescu-$name.log)"
      t1=$(now)
      kill "$SCP_PID" 2>/dev/null || true; SCP_PID=
      files=$(find "$SCP_DIR" -type f | wc -l); bytes=$(du -sb "$SCP_DIR" | cut -f1)
      echo "round $round $name: $files files, $((bytes / 1000000)) MB in $(echo "$t1 - $t0" | bc) s = $(echo "scale=1; $bytes / 1000000 / ($t1 - $t0)" | bc) MB/s" | tee -a "$SUMMARY"
    done
  done
  echo "summary: $SUMMARY"
elif [[ $ACTION == find-vs-orthanc ]]; then
  REQUESTS=${3:-200}
  SUMMARY="$RESULTS/$(date +%Y%m%d-%H%M%S)-dimse-find.txt"
  echo "C-FIND at study level, $(wc -l < "$DATASET/instances.jsonl") instances of $DATASET in both" | tee "$SUMMARY"
  start_lightbox lb_find 8000 lightbox_find
  orthanc_dimse_start "$WORK/orthanc_pg" 8042 4242 orthanc_find --modality benchfind=BENCHFIND@127.0.0.1:11120
  "$PY" "$SHARED/bench/load.py" stow --dataset "$DATASET" --results-dir "$WORK/stow" \
    --target lightbox=http://127.0.0.1:8000/dicom-web --target orthanc_pg=http://127.0.0.1:8042/dicom-web \
    --batch 50 -c 2 > "$WORK/stow.out" 2>&1
  for client in ${CLIENTS:-wire pynetdicom}; do
    echo "client: $client" | tee -a "$SUMMARY"
    "$PY" "$LIB/dimse_find.py" --dataset "$DATASET" --requests "$REQUESTS" --client "$client" \
      --target lightbox=LIGHTBOX@127.0.0.1:$LB_DIMSE --target orthanc_pg=DWBENCH@127.0.0.1:4242 \
      | tee -a "$SUMMARY"
  done
  echo "summary: $SUMMARY"
else
  echo "unknown action $ACTION (store, move or find-vs-orthanc)"; exit 2
fi
