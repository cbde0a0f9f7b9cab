#!/usr/bin/env bash
# Why the raw tables' id sequence caches 1,000 values: two parallel `psql \copy` sessions of the
# same records into one table, with the id sequence at CACHE 1 (bigserial's default) and at
# CACHE 1000, repetitions interleaved. Prints rows/s and the CPU seconds PostgreSQL spent.
# Usage: tests/bench/run_sequence_cache_ab.sh [records] [reps] [build dir]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
records=${1:-1000000}
reps=${2:-2}
build=${3:-$root/build}
cmake -S "$root" -B "$build" >/dev/null
cmake --build "$build" -j"$(nproc)" --target bench_dump_records >/dev/null

# shellcheck source=../../scripts/lib/pg.sh
source "$root/scripts/lib/pg.sh"
work=$(mktemp -d /tmp/etl-seq-ab.XXXXXX)
chmod 755 "$work"
trap 'pg_stop "$work/pg"; rm -rf "$work"' EXIT
pg_start "$work/pg" >/dev/null
postmaster=$(head -1 "$work/pg/data/postmaster.pid")

"$build/bin/bench_dump_records" --records="$records" --page_size=1000 >"$work/rows.copy"
half=$(((records + 1) / 2))
head -n "$half" "$work/rows.copy" >"$work/a.copy"
tail -n +"$((half + 1))" "$work/rows.copy" >"$work/b.copy"
chmod 644 "$work"/*.copy

# CPU seconds (utime+stime) of the postmaster and its children, exited ones included.
pg_cpu() {
  python3 - "$postmaster" <<'PY'
import os, sys
root, tck, total = sys.argv[1], os.sysconf("SC_CLK_TCK"), 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    if pid == root:
        total += sum(int(x) for x in f[11:15])
    elif f[1] == root:
        total += int(f[11]) + int(f[12])
print(total / tck)
PY
}

for _ in $(seq "$reps"); do
  for cache in 1 1000; do
    PGOPTIONS=--client-min-messages=warning psql -X -q -v ON_ERROR_STOP=1 -c "DROP TABLE IF EXISTS t" -c "CREATE TABLE t (
      id bigserial PRIMARY KEY, payload jsonb NOT NULL, natural_key text, job_id text NOT NULL,
      page_number bigint NOT NULL, collected_at timestamptz NOT NULL DEFAULT now())" \
      -c "ALTER SEQUENCE t_id_seq CACHE $cache" -c "CHECKPOINT"
    c0=$(pg_cpu)
    t0=$(date +%s.%N)
    psql -X -q -v ON_ERROR_STOP=1 -c "\\copy t (payload, job_id, page_number) FROM '$work/a.copy'" &
    a=$!
    psql -X -q -v ON_ERROR_STOP=1 -c "\\copy t (payload, job_id, page_number) FROM '$work/b.copy'" &
    b=$!
    wait "$a" "$b"
    t1=$(date +%s.%N)
    c1=$(pg_cpu)
    python3 -c "print(f'sequence CACHE $cache: {$records / ($t1 - $t0):,.0f} rows/s, PostgreSQL CPU \
{($c1 - $c0) / ($records / 1e6):.1f} s per 1M records')"
  done
done
