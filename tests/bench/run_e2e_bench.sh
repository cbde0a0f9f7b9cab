#!/usr/bin/env bash
# End-to-end benchmark: N sample-API records through collector -> gRPC -> writer -> PostgreSQL, side by
# side in the same run with `psql \copy` of the very same records into a table of the same shape.
# Also reports each service's peak RSS (VmHWM). Not part of ctest.
#
#   tests/bench/run_e2e_bench.sh [records=1000000] [page_size=10000] [fetch_concurrency=2]
#
# Uses its own PostgreSQL cluster with default durability settings (like a real deployment).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
N=${1:-1000000}
PAGE=${2:-10000}
CONC=${3:-2}
BUILD=${BUILD:-build}
bin=$BUILD/bin
for b in sample_api writer_server collector_server etlctl etl_health_probe bench_dump_records; do
  [ -x "$bin/$b" ] || { echo "missing $bin/$b: build first (cmake --build $BUILD)"; exit 1; }
done

source scripts/lib/pg.sh
work=$(mktemp -d /tmp/etl-e2e-bench.XXXXXX)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pg_stop "$work/pg"; rm -rf "$work"
}
trap cleanup EXIT
pg_start "$work/pg" >/dev/null

wait_port() {  # wait_port FILE -> prints port once the file exists (the process writes it when serving)
  local f=$1 i
  for i in $(seq 1 300); do [ -s "$f" ] && { cat "$f"; return 0; }; sleep 0.1; done
  echo "timeout waiting for $f" >&2; return 1
}

"$bin/sample_api" --listen=127.0.0.1:0 --port_file="$work/api.port" --records="$N" --max_page_size="$PAGE" \
  >"$work/api.log" 2>&1 & pids+=($!)
"$bin/writer_server" --listen=127.0.0.1:0 --port_file="$work/writer.port" ${WRITER_FLAGS:-} >"$work/writer.log" 2>&1 &
writer_pid=$!; pids+=($writer_pid)
api_port=$(wait_port "$work/api.port"); writer_port=$(wait_port "$work/writer.port")
"$bin/collector_server" --listen=127.0.0.1:0 --port_file="$work/collector.port" \
  --writer="127.0.0.1:$writer_port" --allow-private-networks >"$work/collector.log" 2>&1 &
collector_pid=$!; pids+=($collector_pid)
collector_port=$(wait_port "$work/collector.port")

# Baseline: psql \copy of the same records into a table shaped like dados_raw_cliente_*.
"$bin/bench_dump_records" --cliente=bench --rota=pedidos --records="$N" --page_size="$PAGE" >"$work/rows.copy"
psql -q -v ON_ERROR_STOP=1 -c "CREATE TABLE baseline_copy (id bigserial PRIMARY KEY, payload jsonb NOT NULL,
  natural_key text, job_id text NOT NULL, page_number bigint NOT NULL, collected_at timestamptz NOT NULL DEFAULT now())"
t0=$(date +%s.%N)
psql -q -v ON_ERROR_STOP=1 -c "\\copy baseline_copy (payload, job_id, page_number) FROM '$work/rows.copy'"
t1=$(date +%s.%N)
copy_rate=$(python3 -c "print(round($N/($t1-$t0)))")
psql -q -c "DROP TABLE baseline_copy; CHECKPOINT"

# The pipeline.
t0=$(date +%s.%N)
ETL_COLLECTOR="127.0.0.1:$collector_port" "$bin/etlctl" run --cliente=bench --rota=pedidos \
  --url="http://127.0.0.1:$api_port/v1/clientes/bench/pedidos/page" --pagination=page \
  --page-size="$PAGE" --total-pages-path=/total_pages --records-path=/data \
  --fetch-concurrency="$CONC" >"$work/etlctl.log" 2>&1 || { cat "$work/etlctl.log"; exit 1; }
t1=$(date +%s.%N)
e2e_rate=$(python3 -c "print(round($N/($t1-$t0)))")
rows=$(psql -tAc "SELECT count(*) FROM dados_raw_cliente_bench_pedidos")
distinct=$(psql -tAc "SELECT count(DISTINCT payload->>'id') FROM dados_raw_cliente_bench_pedidos")
hwm() { awk '/VmHWM/ {print int($2/1024)}' "/proc/$1/status"; }
cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14+$15)/hz}' "/proc/$1/stat"; }

echo "records                 : $N (page size $PAGE, fetch concurrency $CONC)"
echo "psql \\copy baseline     : $copy_rate rows/s"
echo "pipeline end to end     : $e2e_rate rows/s ($(python3 -c "print(round($e2e_rate/$copy_rate,2))") x \\copy)"
echo "rows in table / distinct: $rows / $distinct"
echo "peak RSS writer         : $(hwm "$writer_pid") MiB (CPU $(cpu "$writer_pid") s)"
echo "peak RSS collector      : $(hwm "$collector_pid") MiB (CPU $(cpu "$collector_pid") s)"
[ "$rows" = "$N" ] && [ "$distinct" = "$N" ] || { echo "MISMATCH"; exit 1; }
