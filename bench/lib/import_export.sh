#!/usr/bin/env bash
# Bulk import and ZIP export (issue 23's performance targets), Lightbox beside its peers in one run.
#
#   bench/run.py operations import DATASET [MAX] [ORTHANC_MAX] [JOBS]
#   bench/run.py operations export DATASET          (DATASET: one large study, e.g. 3 GB)
#
# import: `lightbox import DATASET/dicom` into a fresh Lightbox (PostgreSQL + files; no server,
# no HTTP hop) with its peak RSS sampled; then a fresh Lightbox server takes the same instances by
# STOW-RS (load.py stow, batch 50, 4 clients); then a fresh Orthanc + PostgreSQL takes the first
# ORTHANC_MAX of them (default 10,000: its REST importer runs at ~100/s, so the whole set would take
# most of an hour) with orthanc_upload.py (ImportDicomFiles.py's REST upload, 4 in flight).
# MAX limits Lightbox's part (0: all; the import is then given a file list of MAX paths).
# export: the study is stored by STOW-RS into a fresh Lightbox, then fetched as a ZIP
# (Accept: application/zip) with curl three times: MB/s of each, the server tree's peak RSS.
set -euo pipefail
source "$(dirname "$0")/common.sh"
ACTION=${1:?import or export}
DATASET=${2:?dataset dir}
WORK=${WORK:-$(mktemp -d /tmp/lightbox-ops.XXXXXX)}
WORKERS=${LIGHTBOX_BENCH_WORKERS:-2}
mkdir -p "$RESULTS" "$WORK"
now() { date +%s.%N; }
peak_rss_of() {  # command... -> runs it, prints "seconds peak_rss_mb peak_pss_mb largest_rss_mb"
  # of the command's tree (process group). RSS summed over processes counts the pages they share
  # (the interpreter, the libraries) once per process; PSS shares them out, so its sum is the
  # memory the tree takes. A multi-process import is reported with both.
  local t0 t1 pid peak=0 peak_pss=0 largest=0 kb pss one p
  t0=$(now)
  setsid "$@" > "$WORK/cmd.log" 2>&1 & pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    kb=0; pss=0
    for p in $(ps -o pid= -g "$pid" 2>/dev/null); do
      one=$(awk '/^Rss:/{r=$2} /^Pss:/{s=$2} END {print r+0, s+0}' "/proc/$p/smaps_rollup" 2>/dev/null) || continue
      kb=$((kb + ${one% *})); pss=$((pss + ${one#* }))
      (( ${one% *} > largest )) && largest=${one% *}
    done
    (( kb > peak )) && peak=$kb
    (( pss > peak_pss )) && peak_pss=$pss
    sleep 0.2
  done
  wait "$pid" || echo "(exit status $?, see $WORK/cmd.log)" >&2
  t1=$(now)
  echo "$(echo "$t1 - $t0" | bc) $((peak / 1024)) $((peak_pss / 1024)) $((largest / 1024))"
}
trap 'stop_all; orthanc_stop "$WORK/orthanc_pg"' EXIT
SUMMARY="$RESULTS/$(date +%Y%m%d-%H%M%S)-operations-$ACTION.txt"

if [[ $ACTION == import ]]; then
  MAX=${3:-0}; ORTHANC_MAX=${4:-10000}; JOBS=${5:-4}
  N=$(wc -l < "$DATASET/instances.jsonl"); [[ $MAX -gt 0 && $MAX -lt $N ]] && N=$MAX
  echo "import of $N instances of $DATASET (Orthanc: $ORTHANC_MAX)" | tee "$SUMMARY"
  fresh_pg_db lightbox_import; rm -rf "$WORK/import"; mkdir -p "$WORK/import"
  export LIGHTBOX_DATABASE_URL=$PG/lightbox_import LIGHTBOX_DATA_DIR=$WORK/import LIGHTBOX_LOG_LEVEL=warning
  (cd "$REPO" && "$LB" db upgrade >/dev/null)
  SRC=("$DATASET/dicom")
  if [[ $MAX -gt 0 ]]; then  # the first MAX files, as links in a tree of their own
    rm -rf "$WORK/subset"; mkdir -p "$WORK/subset"
    find "$DATASET/dicom" -name '*.dcm' | sort | head -n "$MAX" | while read -r f; do
      ln -s "$f" "$WORK/subset/$(echo "$f" | md5sum | cut -c1-16).dcm"; done
    SRC=("$WORK/subset")
  fi
  PROCS=(); [[ -n ${PROCESSES:-} ]] && PROCS=(--processes "$PROCESSES")
  read -r secs rss pss largest <<< "$(peak_rss_of "$LB" import --no-progress --jobs "$JOBS" \
      "${PROCS[@]}" --journal "$WORK/journal.sqlite" "${SRC[@]}")"
  echo "lightbox_import: $N instances in $secs s = $(echo "scale=1; $N / $secs" | bc)/s, peak of the process tree: RSS ${rss} MB (summed), PSS ${pss} MB; largest process ${largest} MB" | tee -a "$SUMMARY"
  tail -3 "$WORK/cmd.log" | tee -a "$SUMMARY"
  unset LIGHTBOX_DATABASE_URL LIGHTBOX_DATA_DIR
  fresh_pg_db lightbox_import_stow
  (cd "$REPO" && LIGHTBOX_DATABASE_URL=$PG/lightbox_import_stow LIGHTBOX_DATA_DIR=$WORK/stow "$LB" db upgrade >/dev/null)
  lb_serve lb_stow 8001 "$PG/lightbox_import_stow" "$WORK/stow" LIGHTBOX_AUTH__ENABLED=false
  LIMIT=(); [[ $MAX -gt 0 ]] && LIMIT=(--max-instances "$MAX")
  "$PY" "$SHARED/bench/load.py" stow --dataset "$DATASET" --results-dir "$WORK/stowres" \
    --target lightbox=http://127.0.0.1:8001/dicom-web --batch 50 -c 4 "${LIMIT[@]}" > "$WORK/stow.out" 2>&1
  "$PY" - "$WORK/stowres" <<'PY' | tee -a "$SUMMARY"
import json, pathlib, sys
path = sorted(pathlib.Path(sys.argv[1]).glob("*.json"))[-1]
s = json.loads(path.read_text())["results"]["lightbox"]["stow"]
print(f"lightbox_stow: {s['instances_stored']} instances in {s['wall_s']} s = {s['instances_per_s']}/s")
PY
  stop_all
  if [[ $ORTHANC_MAX -gt 0 ]]; then
    orthanc_start "$WORK/orthanc_pg" 8042 orthanc_import
    echo "orthanc_pg_rest_import: $("$PY" "$LIB/orthanc_upload.py" --url http://127.0.0.1:8042 --dataset "$DATASET" --max "$ORTHANC_MAX")" | tee -a "$SUMMARY"
    orthanc_stop "$WORK/orthanc_pg"
  fi
elif [[ $ACTION == export ]]; then
  STUDY=$("$PY" -c "import json,sys; print(json.loads(open(sys.argv[1]+'/instances.jsonl').readline())['study_uid'])" "$DATASET")
  fresh_pg_db lightbox_export
  (cd "$REPO" && LIGHTBOX_DATABASE_URL=$PG/lightbox_export LIGHTBOX_DATA_DIR=$WORK/export "$LB" db upgrade >/dev/null)
  lb_serve lb_export 8002 "$PG/lightbox_export" "$WORK/export" LIGHTBOX_AUTH__ENABLED=false
  "$PY" "$SHARED/bench/load.py" stow --dataset "$DATASET" --results-dir "$WORK/stowres" \
    --target lightbox=http://127.0.0.1:8002/dicom-web --batch 50 -c 4 > "$WORK/stow.out" 2>&1
  echo "ZIP export of study $STUDY ($(du -sh "$DATASET/dicom" | cut -f1) of files)" | tee "$SUMMARY"
  PGID=$(cat "$WORK/lb_export.pid")
  for round in 1 2 3; do
    peak=0
    t0=$(now)
    curl -fsS -H 'Accept: application/zip' -o "$WORK/study.zip" \
      "http://127.0.0.1:8002/dicom-web/studies/$STUDY" & CURL=$!
    while kill -0 "$CURL" 2>/dev/null; do
      kb=$(ps -o rss= -g "$PGID" 2>/dev/null | awk '{s+=$1} END {print s+0}')
      (( kb > peak )) && peak=$kb
      sleep 0.1
    done
    wait "$CURL"
    t1=$(now)
    bytes=$(stat -c %s "$WORK/study.zip")
    echo "round $round: $((bytes / 1000000)) MB in $(echo "$t1 - $t0" | bc) s = $(echo "scale=1; $bytes / 1000000 / ($t1 - $t0)" | bc) MB/s, server peak RSS $((peak / 1024)) MB" | tee -a "$SUMMARY"
    rm -f "$WORK/study.zip"
  done
else
  echo "unknown action $ACTION (import or export)"; exit 2
fi
echo "summary: $SUMMARY"
