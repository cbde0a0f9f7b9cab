#!/usr/bin/env bash
# Measures, in one run on one private PostgreSQL 15: 1M ~300-byte JSON orders
#   1. psql \copy into a jsonb table (the limit for one table),
#   2. streamed through writer_server's Write (ack after commit),
#   3. the seed's design: INSERT batches of 50, one transaction each.
# Usage: tests/bench/run_writer_bench.sh [records] [build dir]   (builds bench_writer + writer_server)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
records=${1:-1000000}
build=${2:-$root/build}
cmake -S "$root" -B "$build" -DETL_WERROR=ON >/dev/null
cmake --build "$build" -j"$(nproc)" --target writer_server bench_writer >/dev/null

# shellcheck source=../../scripts/lib/pg.sh
source "$root/scripts/lib/pg.sh"
work=$(mktemp -d /tmp/etl-bench.XXXXXX)
chmod 755 "$work"
writer_pid=""
cleanup() {
  if [ -n "$writer_pid" ]; then kill "$writer_pid" 2>/dev/null || true; wait "$writer_pid" 2>/dev/null || true; fi
  pg_stop "$work/pg"; rm -rf "$work"
}
trap cleanup EXIT
pg_start "$work/pg" >/dev/null

"$build/bin/bench_writer" --mode=generate --records="$records" --out="$work/orders.copy"
chmod 644 "$work/orders.copy"

# 1. psql \copy into the same kind of table the writer creates.
psql -q -v ON_ERROR_STOP=1 -c "CREATE TABLE copy_baseline (id bigserial PRIMARY KEY, payload jsonb NOT NULL,
  natural_key text, job_id text NOT NULL DEFAULT 'copy', page_number bigint NOT NULL DEFAULT 0,
  collected_at timestamptz NOT NULL DEFAULT now())"
start=$(date +%s.%N)
psql -q -v ON_ERROR_STOP=1 -c "\\copy copy_baseline (payload) FROM '$work/orders.copy'"
end=$(date +%s.%N)
copy_rate=$(python3 -c "print(round($records/($end-$start)))")
echo "psql_copy rows=$records seconds=$(python3 -c "print(round($end-$start,2))") rows_per_second=$copy_rate"

# 2. Through the writer.
"$build/bin/writer_server" --listen=127.0.0.1:0 --port_file="$work/port" ${WRITER_FLAGS:-} 2>"$work/writer.log" &
writer_pid=$!
for _ in $(seq 1 100); do [ -s "$work/port" ] && break; sleep 0.1; done
port=$(cat "$work/port")
grpc_line=$("$build/bin/bench_writer" --mode=grpc --address="127.0.0.1:$port" --records="$records" ${BENCH_FLAGS:-})
echo "$grpc_line"
grpc_rate=${grpc_line##*rows_per_second=}

# 3. The seed's design.
seed_line=$("$build/bin/bench_writer" --mode=seed --records="$records")
echo "$seed_line"
seed_rate=${seed_line##*rows_per_second=}

python3 - "$copy_rate" "$grpc_rate" "$seed_rate" <<'PY'
import sys
copy, grpc, seed = map(float, sys.argv[1:])
print(f"writer / psql \\copy = {grpc/copy:.2f} (target >= 0.9); writer / seed = {grpc/seed:.1f} (target >= 10)")
PY
