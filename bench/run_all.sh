#!/usr/bin/env bash
# Run the benchmarks of docs/benchmarks.md in turn (about 40 minutes on the 2-core machine)
# and keep each command's report in bench/results/NAME_STAMP.txt (its progress log in
# NAME_STAMP.log; STAMP the date and time of the start, so that no report is overwritten).
# Usage: bash bench/run_all.sh [NAME ...]   (default: the current set, in the order below)
# The app is copied from one commit (LETTERS_BENCH_REF, HEAD by default, resolved once so
# that a commit made meanwhile does not split the run), not from the working tree.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=bench/results
mkdir -p "$OUT"
LETTERS_BENCH_REF=$(git rev-parse --verify "${LETTERS_BENCH_REF:-HEAD}^{commit}") || exit 2
export LETTERS_BENCH_REF
STAMP=$(date -u +%FT%H%M)

declare -A COMMANDS=(
  # Section 1: the write path against the lean reference (bench/lean.py), in one command.
  [storm]="-m bench.storm --workers 1,2 --rounds 2 --duration 30 --quiet-wait 10 --database letters_bench_wp --json $OUT/storm_$STAMP.json"
  [storm_ips]="-m bench.storm --workers 2 --rounds 2 --duration 30 --quiet-wait 10 --client-ips 10000 --database letters_bench_wp"
  [steady]="-m bench.steady --rate 60 --duration 60 --workers 2 --quiet-wait 10 --database letters_bench_wp"
  # Section 2: a million signatures (reads and storm, empty then seeded).
  [size]="-m bench.size --quiet-wait 10 --storm-duration 30 --read-rounds 2 --json $OUT/size_$STAMP.json"
  # Section 3: reads against a bare endpoint run as plain uvicorn runs it.
  [read_on]="-m bench.read --workers 1 --rounds 5 --duration 8 --quiet-wait 10 --json $OUT/read_on_$STAMP.json"
  [read_off]="-m bench.read --workers 1 --rounds 5 --duration 8 --quiet-wait 10 --no-access-log --json $OUT/read_off_$STAMP.json"
  # Section 6: timing seen from outside.
  [oracle]="-m bench.oracle --requests 200"
)
ORDER=(storm storm_ips steady size read_on read_off oracle)
[ $# -gt 0 ] && ORDER=("$@")

for name in "${ORDER[@]}"; do
  if [ -z "${COMMANDS[$name]:-}" ]; then
    echo "unknown benchmark: $name (known: ${!COMMANDS[*]})" >&2
    exit 2
  fi
  echo "== $name: $PY ${COMMANDS[$name]}  ($(date -u +%H:%M:%S) UTC)"
  # shellcheck disable=SC2086
  timeout 3600 "$PY" ${COMMANDS[$name]} > "$OUT/${name}_$STAMP.txt" 2> "$OUT/${name}_$STAMP.log"
  echo "   exit $? ($(date -u +%H:%M:%S) UTC)"
done
