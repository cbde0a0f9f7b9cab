#!/usr/bin/env bash
# Aggregate throughput of C collectors and W writers against one PostgreSQL: J jobs (one table each)
# of N/J sample-API records, started round-robin over the collectors at once; rows/s = N / wall time
# from the first start to the last job's end. Each collector reaches every writer through one
# channel (ipv4: target list, round_robin), the way dns:/// does behind a headless Service.
# Not part of ctest.
#
#   tests/bench/run_scaling_bench.sh [records=200000] [jobs=8] [page_size=5000] "C,W C,W ..."
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
N=${1:-200000}
J=${2:-8}
PAGE=${3:-5000}
COMBOS=${4:-"1,1 2,1 4,1 1,2 2,2 4,2"}
BUILD=${BUILD:-build}
bin=$BUILD/bin
for b in sample_api writer_server collector_server etlctl; do
  [ -x "$bin/$b" ] || { echo "missing $bin/$b: build first"; exit 1; }
done
source scripts/lib/pg.sh
work=$(mktemp -d /tmp/etl-scaling-bench.XXXXXX)
chmod 755 "$work"
pids=()
api_pid=
stop_all() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap 'stop_all; [ -n "$api_pid" ] && kill "$api_pid" 2>/dev/null; pg_stop "$work/pg"; rm -rf "$work"' EXIT
pg_start "$work/pg" >/dev/null
wait_port() {
  local f=$1 i
  for i in $(seq 1 300); do [ -s "$f" ] && { cat "$f"; return 0; }; sleep 0.1; done
  echo "timeout waiting for $f" >&2; return 1
}
per_job=$((N / J))
"$bin/sample_api" --listen=127.0.0.1:0 --port_file="$work/api.port" --records="$per_job" \
  --max_page_size="$PAGE" >"$work/api.log" 2>&1 &
api_pid=$!
api_port=$(wait_port "$work/api.port")
echo "records $N in $J jobs of $per_job, page size $PAGE"
printf "%-11s %-8s %-10s %s\n" collectors writers rows/s "rows (expected $N)"
run=0
for combo in $COMBOS; do
  C=${combo%,*}; W=${combo#*,}; run=$((run + 1))
  targets=()
  for w in $(seq 1 "$W"); do
    rm -f "$work/w$w.port"
    "$bin/writer_server" --listen=127.0.0.1:0 --port_file="$work/w$w.port" >"$work/w$w.log" 2>&1 &
    pids+=($!)
    targets+=("127.0.0.1:$(wait_port "$work/w$w.port")")
  done
  target="ipv4:$(IFS=,; echo "${targets[*]}")"
  cports=()
  for c in $(seq 1 "$C"); do
    rm -f "$work/c$c.port"
    "$bin/collector_server" --listen=127.0.0.1:0 --port_file="$work/c$c.port" --writer="$target" \
      --allow-private-networks >"$work/c$c.log" 2>&1 &
    pids+=($!)
    cports+=("$(wait_port "$work/c$c.port")")
  done
  psql -q -c CHECKPOINT
  t0=$(date +%s.%N)
  runs=()
  for j in $(seq 1 "$J"); do
    cp=${cports[$(( (j - 1) % C ))]}
    ETL_COLLECTOR="127.0.0.1:$cp" "$bin/etlctl" run --cliente="s${run}j$j" --rota=pedidos \
      --url="http://127.0.0.1:$api_port/v1/clientes/s${run}j$j/pedidos/page" --pagination=page \
      --page-size="$PAGE" --total-pages-path=/total_pages --records-path=/data \
      --fetch-concurrency=2 >"$work/run$run-$j.log" 2>&1 &
    runs+=($!)
  done
  for p in "${runs[@]}"; do wait "$p" || { cat "$work"/run$run-*.log; exit 1; }; done
  t1=$(date +%s.%N)
  rows=0
  for j in $(seq 1 "$J"); do
    rows=$((rows + $(psql -tAc "SELECT count(*) FROM dados_raw_cliente_s${run}j${j}_pedidos")))
  done
  printf "%-11s %-8s %-10s %s\n" "$C" "$W" "$(python3 -c "print(round($N/($t1-$t0)))")" "$rows"
  stop_all
  pids=()
done
