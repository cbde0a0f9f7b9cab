#!/usr/bin/env bash
# Merge against append, same records, same run, same private PostgreSQL 15: N ~300-byte orders
# streamed through writer_server's Write into two fresh tables, one job registered as append and one
# as merge (unique index on natural_key, staging table + INSERT ... ON CONFLICT). Target: merge >= 0.6x.
# Usage: tests/bench/run_write_mode_bench.sh [records] [build dir]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
records=${1:-200000}
build=${2:-$root/build}
cmake -S "$root" -B "$build" -DETL_WERROR=ON >/dev/null
cmake --build "$build" -j2 --target writer_server bench_writer >/dev/null

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
"$build/bin/writer_server" --listen=127.0.0.1:0 --port_file="$work/port" ${WRITER_FLAGS:-} 2>"$work/writer.log" &
writer_pid=$!
for _ in $(seq 1 100); do [ -s "$work/port" ] && break; sleep 0.1; done
port=$(cat "$work/port")

append_line=$("$build/bin/bench_writer" --mode=grpc --address="127.0.0.1:$port" --records="$records" \
  --cliente_id=benchappend --write_mode=append)
echo "$append_line"
merge_line=$("$build/bin/bench_writer" --mode=grpc --address="127.0.0.1:$port" --records="$records" \
  --cliente_id=benchmerge --write_mode=merge)
echo "$merge_line"
rows=$(psql -At -c "SELECT count(*) FROM dados_raw_cliente_benchmerge_pedidos")
python3 - "${append_line##*rows_per_second=}" "${merge_line##*rows_per_second=}" "$rows" "$records" <<'PY'
import sys
append, merge, rows, records = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
print(f"merge / append = {merge/append:.2f} (target >= 0.6); merge table rows = {rows} (expected {records})")
PY
