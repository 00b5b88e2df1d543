#!/usr/bin/env bash
# Prometheus metrics end to end: `strata serve --metrics_listen`, some puts
# and gets through the CLI, the page checked by `promtool check metrics`, then
# a real Prometheus server (started here) scrapes the node and its query API
# returns Strata's counters. The Grafana dashboard (tools/grafana/) is checked
# against the same page: every metric and label its queries name must be
# there, and every query must parse in that Prometheus.
#
# usage: metrics_test.sh STRATA_BINARY SERVE_HELPERS DASHBOARD_JSON CHECK_DASHBOARD_PY
set -euo pipefail

STRATA="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
HELPERS="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
DASHBOARD="$(cd "$(dirname "$3")" && pwd)/$(basename "$3")"
CHECK_DASHBOARD="$(cd "$(dirname "$4")" && pwd)/$(basename "$4")"
WORK="${TEST_TMPDIR:-$(mktemp -d)}/metrics_test"
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK"

LOG_FILES="out.txt prometheus.log"
# shellcheck source=serve_helpers.sh
source "$HELPERS"
PROM_PID=""
cleanup() {
  [ -n "$PROM_PID" ] && kill "$PROM_PID" 2>/dev/null || true
  kill_server
}
trap cleanup EXIT

command -v promtool >/dev/null || fail "promtool not found (tools/setup.sh installs prometheus)"
command -v prometheus >/dev/null || fail "prometheus not found (tools/setup.sh installs it)"

fetch() { python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

METRICS_PORT=$(free_port)
start_server --dram 64MiB --nvme 256MiB --metrics_listen "127.0.0.1:$METRICS_PORT"
grep -q "metrics at http://127.0.0.1:$METRICS_PORT/metrics" serve.log || fail "no metrics line in the banner"

head -c $((3 * 1024 * 1024)) /dev/urandom >file.bin
timeout 60 "$STRATA" put --server "$SERVER" file.bin >out.txt 2>&1 || fail "put failed"
timeout 60 "$STRATA" get --server "$SERVER" file.bin --out copy.bin >out.txt 2>&1 || fail "get failed"

fetch "http://127.0.0.1:$METRICS_PORT/metrics" >metrics.txt || fail "cannot fetch /metrics"
promtool check metrics <metrics.txt >out.txt 2>&1 || fail "promtool check metrics failed: $(cat out.txt)"
grep -qE '^strata_puts_committed_total\{node="[^"]+"\} 3$' metrics.txt || fail "puts_committed is not 3"
grep -qE '^strata_rpc_duration_seconds_count\{node="[^"]+",rpc="PutBegin"\} [1-9]' metrics.txt ||
  fail "no PutBegin latency"
grep -qE '^strata_rpcs_total\{node="[^"]+",rpc="Get",code="OK"\} [1-9]' metrics.txt || fail "no Get outcome"
grep -qE '^strata_tenant_dram_bytes\{node="[^"]+",tenant="[^"]*"\} [1-9]' metrics.txt ||
  fail "no per-tenant DRAM bytes"
grep -qE '^strata_tier_fill_ratio\{node="[^"]+",tier="dram"\} 0\.[0-9]+$' metrics.txt || fail "no DRAM fill"
grep -qE '^strata_request_bytes_bucket\{node="[^"]+",op="put",le="\+Inf"\} [1-9]' metrics.txt ||
  fail "no put size histogram"

# The dashboard names only what the page has; the check catches a metric, a
# label and a label value the page lacks.
python3 "$CHECK_DASHBOARD" "$DASHBOARD" metrics.txt >out.txt 2>&1 || fail "dashboard check failed"
# doctor EXPR_FROM EXPR_TO: the dashboard with the first query holding
# EXPR_FROM rewritten, as bad.json.
doctor() {
  python3 - "$DASHBOARD" "$1" "$2" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
def walk(panels):
    for p in panels:
        for t in p.get("targets", []):
            if sys.argv[2] in t["expr"]:
                t["expr"] = t["expr"].replace(sys.argv[2], sys.argv[3], 1)
                return True
        if walk(p.get("panels", [])):
            return True
    return False
assert walk(d["panels"]), sys.argv[2]
json.dump(d, open("bad.json", "w"))
PY
}
expect_rejected() {  # PATTERN [PROMETHEUS_URL]
  if python3 "$CHECK_DASHBOARD" bad.json metrics.txt ${2:+"$2"} >out.txt 2>&1; then
    fail "dashboard check accepted a dashboard where it should say: $1"
  fi
  grep -q "$1" out.txt || fail "dashboard check did not say '$1': $(cat out.txt)"
}
doctor strata_dram_used_bytes strata_dram_usd_bytes
expect_rejected "metric 'strata_dram_usd_bytes' is not exported"
doctor 'rpc="Get"' 'rpc="Gett"'
expect_rejected 'strata_rpc_duration_seconds_sum{rpc="Gett"} is not on the page'
doctor 'by (le, rpc)' 'by (le, method)'
expect_rejected "no metric of the query has label 'method'"
doctor '[$__rate_interval]' '[$rate_window]'
expect_rejected "unknown variable 'rate_window'"

# A real Prometheus scrapes it.
PROM_PORT=$(free_port)
cat >prometheus.yml <<YAML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: strata
    static_configs:
      - targets: ["127.0.0.1:$METRICS_PORT"]
YAML
promtool check config prometheus.yml >out.txt 2>&1 || fail "promtool check config failed"
prometheus --config.file=prometheus.yml --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" >prometheus.log 2>&1 &
PROM_PID=$!
value=""
for _ in $(seq 120); do
  value=$(fetch "http://127.0.0.1:$PROM_PORT/api/v1/query?query=strata_puts_committed_total" 2>/dev/null |
    python3 -c 'import json, sys; r = json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' \
    2>/dev/null || true)
  [ "$value" = "3" ] && break
  sleep 0.5
done
[ "$value" = "3" ] || fail "Prometheus did not return strata_puts_committed_total = 3 (got '$value')"
up=$(fetch "http://127.0.0.1:$PROM_PORT/api/v1/query?query=up" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["result"][0]["value"][1])')
[ "$up" = "1" ] || fail "Prometheus says the target is down"
# Every dashboard query, its variables filled in, parses in this Prometheus.
python3 "$CHECK_DASHBOARD" "$DASHBOARD" metrics.txt "http://127.0.0.1:$PROM_PORT" >out.txt 2>&1 ||
  fail "dashboard queries failed in Prometheus"
doctor 'histogram_quantile(0.99, ' 'histogram_quantile(0.99 '
expect_rejected "Prometheus refused it" "http://127.0.0.1:$PROM_PORT"
kill "$PROM_PID"
wait "$PROM_PID" 2>/dev/null || true
PROM_PID=""

stop_server
echo "PASS"
