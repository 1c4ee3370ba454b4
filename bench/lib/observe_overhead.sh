#!/usr/bin/env bash
# What the metrics and the JSON access log cost (issue 23: <= 3% of QIDO throughput at 4
# clients): two servers on the bench index measured under wrk in the same run (simultaneous.sh),
#
#   plain     metrics off, access log off, LIGHTBOX_LOG_LEVEL=warning (no line per request)
#   observed  metrics on, a line per request as JSON at INFO (to its log file, as a container's
#             log), its metrics port scraped every SCRAPE seconds
#
#   bench/run.py overhead observe [ROUNDS] [CONNECTIONS]      (8 rounds, 4 connections)
#
# Settings: SCRAPE (5 s), METRICS_PORT (9464), KIND (qido; frames works too), SEQUENTIAL=1 (each
# server alone in turn: latencies), AA=1 (an A/A control: two plain servers, the noise).
# Reads the median ratios of req/s, p50/p95/p99 and server CPU per request that simultaneous.sh
# prints for "observed" against "plain". Needs wrk, the bench index (BENCH_DB, BENCH_DIR) and the
# datasets (DATA), as perf_all.sh.
set -euo pipefail
source "$(dirname "$0")/common.sh"
ROUNDS=${1:-8} C=${2:-4}
PORT=${METRICS_PORT:-9464} SCRAPE=${SCRAPE:-5} KIND=${KIND:-qido}
PLAIN=plain:LIGHTBOX_METRICS__ENABLED=false:LIGHTBOX_ACCESS_LOG=false
OBSERVED=observed:LIGHTBOX_LOG_FORMAT=json:LIGHTBOX_LOG_LEVEL=info:LIGHTBOX_METRICS__PORT=$PORT
[[ ${AA:-0} == 1 ]] && OBSERVED=${PLAIN/plain/plain2}

# the scraper Prometheus would be (it waits for the listener, which starts with the server)
( while sleep "$SCRAPE"; do curl -fs -o /dev/null "http://127.0.0.1:$PORT/metrics" || true; done ) &
SCRAPER=$!
trap 'kill "$SCRAPER" 2>/dev/null || true' EXIT
bash "$LIB/simultaneous.sh" "$KIND" "$ROUNDS" "$C" "$PLAIN" "$OBSERVED"
