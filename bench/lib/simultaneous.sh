#!/usr/bin/env bash
# Lightbox configurations compared under load at the same time: every server of the run gets its
# own wrk for the same 10 s, round after round, so a drift of the machine's speed (which moved
# the alternating rounds of perf_all.sh's overhead section by more than the effects measured)
# weighs on all of them alike. Each server runs on the bench index with its own settings.
#
#   bench/run.py overhead simultaneous qido|frames ROUNDS CONNECTIONS SPEC SPEC ...
#   SPEC: name[,notoken][:VAR=value[:VAR=value...]]   (the first SPEC is the base)
#
#   bench/run.py overhead simultaneous qido 8 4 off,notoken:LIGHTBOX_AUTH__ENABLED=false:LIGHTBOX_AUTH__AUDIT_ENABLED=false on
#
# Prints every round, then each server against the base: the median over rounds of the ratio of
# req/s, p50, p95, p99 and the server's CPU per request (its processes, from /proc; PostgreSQL's
# CPU cannot be told apart per server here). With N servers at CONNECTIONS each, each one has
# about 1/N of the machine: use it to compare CPU cost and throughput; the latency of a server
# alone is what perf_all.sh measures. An A/A run (two identical SPECs) shows the noise.
#
# SEQUENTIAL=1: the servers take turns instead, one at a time with the machine to itself (the
# order rotates each round, so a drift weighs on all alike): the latency of each server alone,
# as perf_all.sh's overhead section measures it for two, for any number of configurations, and
# PostgreSQL's CPU per request too (only one server is under load at a time).
# Needs wrk, the bench index (BENCH_DB, BENCH_DIR) and the datasets (DATA), as perf_all.sh.
set -euo pipefail
source "$(dirname "$0")/common.sh"
BENCH_DB=${BENCH_DB:-lb_bench}
BENCH_DIR=${BENCH_DIR:-$DATA/lb}
WORKERS=${WORKERS:-2}
KIND=$1 ROUNDS=$2 C=$3
shift 3
WORK=$(mktemp -d /tmp/lightbox-simul.XXXXXX)

"$PY" "$LIB/wrk_rounds.py" paths "$KIND" "$DATA" --prefix /dicom-web > "$WORK/paths"
ACCEPT=application/dicom+json
[[ $KIND == frames ]] && ACCEPT=$FRAME_ACCEPT

trap stop_all EXIT

LIGHTBOX_DATA_DIR=$BENCH_DIR "$LB" token create --subject bench --scope read --ttl 1d |
    tail -n 1 > "$WORK/token"
NAMES=() PORTS=() TOKENS=()
port=8100
for spec in "$@"; do
  head=${spec%%:*} settings=()
  [[ $spec == *:* ]] && IFS=: read -r -a settings <<< "${spec#*:}"
  name=${head%%,*}
  token=$(cat "$WORK/token")
  [[ $head == *,notoken ]] && token=""
  lb_serve "$name" "$port" "$PG/$BENCH_DB" "$BENCH_DIR" "${settings[@]}"
  NAMES+=("$name") PORTS+=("$port") TOKENS+=("$token")
  port=$((port + 1))
done

one_alone() {  # index round -> one 10 s wrk round of that server alone (JSON line)
  local i=$1 r=$2 before after
  before=$("$PY" "$LIB/wrk_rounds.py" cpu "serve --port ${PORTS[$i]}" "postgres:" ":steal")
  WRK_PATHS=$WORK/paths WRK_ACCEPT=$ACCEPT WRK_BEARER=${TOKENS[$i]} wrk -t1 -c"$C" -d10s \
      -s "$LIB/wrk_paths.lua" "http://127.0.0.1:${PORTS[$i]}" > "$WORK/wrk.$i"
  after=$("$PY" "$LIB/wrk_rounds.py" cpu "serve --port ${PORTS[$i]}" "postgres:" ":steal")
  "$PY" "$LIB/wrk_rounds.py" cost "$(tail -n 1 "$WORK/wrk.$i")" "$before" "$after" \
      --prefix "round $r ${NAMES[$i]} "
}

for r in $(seq "$ROUNDS"); do
  if [[ ${SEQUENTIAL:-0} == 1 ]]; then
    n=${#NAMES[@]}
    for k in $(seq 0 $((n - 1))); do
      one_alone $(((k + r) % n)) "$r" | tee -a "$WORK/rounds"
    done
    continue
  fi
  for i in "${!NAMES[@]}"; do
    "$PY" "$LIB/wrk_rounds.py" cpu "serve --port ${PORTS[$i]}" > "$WORK/cpu0.$i"
  done
  waits=()
  for i in "${!NAMES[@]}"; do
    (WRK_PATHS=$WORK/paths WRK_ACCEPT=$ACCEPT WRK_BEARER=${TOKENS[$i]} wrk -t1 -c"$C" -d10s \
        -s "$LIB/wrk_paths.lua" "http://127.0.0.1:${PORTS[$i]}" > "$WORK/wrk.$i"
     "$PY" "$LIB/wrk_rounds.py" cpu "serve --port ${PORTS[$i]}" > "$WORK/cpu1.$i") &
    waits+=($!)
  done
  wait "${waits[@]}"
  for i in "${!NAMES[@]}"; do
    "$PY" "$LIB/wrk_rounds.py" cost "$(tail -n 1 "$WORK/wrk.$i")" "$(cat "$WORK/cpu0.$i")" \
        "$(cat "$WORK/cpu1.$i")" --prefix "round $r ${NAMES[$i]} " | tee -a "$WORK/rounds"
  done
done

"$PY" - "$WORK/rounds" "${NAMES[0]}" <<'PYEOF'
import collections, json, statistics, sys
path, base = sys.argv[1:]
rounds = collections.defaultdict(dict)
for line in open(path):
    _, r, name, data = line.split(" ", 3)
    rounds[r][name] = json.loads(data)
names = list(next(iter(rounds.values())))
print(f"median over {len(rounds)} rounds, against {base}:")
for name in names:
    if name == base:
        continue
    parts = []
    for key in ("rps", "p50_ms", "p95_ms", "p99_ms", "server_ms_per_req", "pg_ms_per_req"):
        ratios = [x[name][key] / x[base][key] - 1 for x in rounds.values() if x[base].get(key)]
        if not ratios:  # PostgreSQL's share is only measured with SEQUENTIAL=1
            continue
        parts.append(f"{key} {100 * statistics.median(ratios):+.1f}%")
    print(f"  {name}: " + ", ".join(parts))
stolen = [x[n]["steal_pct"] for x in rounds.values() for n in x if "steal_pct" in x[n]]
if stolen:  # SEQUENTIAL=1: a round on a slowed machine shows here (wrk_rounds.py cpu)
    print(f"CPU stolen by the hypervisor: median {statistics.median(stolen):g}%, max {max(stolen):g}%")
PYEOF
