#!/usr/bin/env bash
# Builds the libFuzzer targets in build-fuzz/ (clang-14, ASan + UBSan) and runs each for an equal share
# of a time budget, starting from the committed seed corpus (tests/fuzz/corpus/<target>/) plus a
# working corpus kept in build-fuzz/corpus/. A crash stops the run with the reproducer's path; turn it
# into a regression test (a seed under corpus/ and a unit test) before fixing.
#   tests/fuzz/run_fuzzers.sh [total_seconds=60] [target...]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
total=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(fuzz_json_page fuzz_link_header fuzz_url fuzz_date fuzz_copy_text fuzz_job_spec fuzz_credentials)
fi
build=${FUZZ_BUILD_DIR:-build-fuzz}
cxx=${FUZZ_CXX:-clang++-14}
if [ -z "${FUZZ_SKIP_BUILD:-}" ]; then  # FUZZ_SKIP_BUILD=1: run binaries already in $build/fuzz.
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DETL_FUZZ=ON -DBUILD_TESTING=OFF \
    -DCMAKE_CXX_COMPILER="$cxx" >/dev/null
  cmake --build "$build" -j"$(nproc)" --target "${targets[@]}" >/dev/null
fi
per=$(( total / ${#targets[@]} ))
[ "$per" -ge 1 ] || per=1
status=0
for t in "${targets[@]}"; do
  work="$build/corpus/$t"
  artifacts="$build/artifacts/$t/"
  mkdir -p "$work" "$artifacts"
  log="$build/$t.log"
  # Every committed seed must pass first (the regression part), then the target fuzzes.
  if ! "$build/fuzz/$t" -runs=0 "tests/fuzz/corpus/$t" >"$log.seeds" 2>&1; then
    echo "FAIL $t: a committed seed crashes (see $log.seeds)"; status=1; continue
  fi
  if "$build/fuzz/$t" -max_total_time="$per" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
       -print_final_stats=1 -artifact_prefix="$artifacts" "$work" "tests/fuzz/corpus/$t" >"$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    echo "ok   $t: ${per}s, $runs runs, no crash"
  else
    echo "FAIL $t: see $log and $artifacts"; tail -n 30 "$log"; status=1
  fi
done
exit $status
