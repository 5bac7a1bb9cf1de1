#!/usr/bin/env bash
# Run every benchmark in turn (about 75 minutes on the 2-core machine) and keep each
# command's report in bench/results/NAME.txt (its progress log in NAME.log).
# Usage: bash bench/run_all.sh [NAME ...]   (default: all, in the order below)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=bench/results
mkdir -p "$OUT"

declare -A COMMANDS=(
  [dbceiling]="-m bench.dbceiling"
  [cost]="-m bench.cost"
  [storm]="-m bench.storm --workers 1,2,3"
  [storm_outbox]="-m bench.storm --workers 2 --mail outbox"
  [storm_ips]="-m bench.storm --workers 2 --client-ips 10000"
  [read_final]="-m bench.read --workers 1 --rounds 5 --json $OUT/read_final.json"
  [read]="-m bench.read --workers 1,2 --json $OUT/read.json"
  [read_nolog]="-m bench.read --workers 1 --no-access-log --json $OUT/read_nolog.json"
  [experiment]="-m bench.experiment --each --json $OUT/experiment.json"
  [experiment_read]="-m bench.experiment --read --skip-cost --skip-storm --json $OUT/experiment_read.json"
  [size]="-m bench.size --json $OUT/size.json"
  # The write path against the lean reference (bench/lean.py), in the same command.
  [storm_after]="-m bench.storm --workers 1,2 --rounds 2 --duration 45 --json $OUT/storm_after.json"
  [storm_ips_after]="-m bench.storm --workers 2 --rounds 2 --duration 45 --client-ips 10000 --json $OUT/storm_ips_after.json"
  [steady]="-m bench.steady --rate 60 --duration 60 --workers 2 --json $OUT/steady.json"
  # The read path against a bare endpoint run as plain uvicorn runs it (section 1).
  [read_path_on]="-m bench.read --workers 1 --rounds 5 --quiet-wait 3 --max-other 9 --json $OUT/read_path_on.json"
  [read_path_off]="-m bench.read --workers 1 --rounds 5 --quiet-wait 3 --max-other 9 --no-access-log --json $OUT/read_path_off.json"
)
ORDER=(dbceiling cost storm storm_outbox storm_ips read_final read read_nolog experiment experiment_read size storm_after storm_ips_after steady read_path_on read_path_off)
[ $# -gt 0 ] && ORDER=("$@")

for name in "${ORDER[@]}"; do
  echo "== $name: $PY ${COMMANDS[$name]}  ($(date -u +%H:%M:%S) UTC)"
  # shellcheck disable=SC2086
  timeout 3600 "$PY" ${COMMANDS[$name]} > "$OUT/$name.txt" 2> "$OUT/$name.log"
  echo "   exit $? ($(date -u +%H:%M:%S) UTC)"
done
