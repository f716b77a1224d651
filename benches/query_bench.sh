#!/usr/bin/env bash
# The query benchmark (a measurement, not a test): ticketsync vs DuckDB over the same files.
#
#   benches/query_bench.sh                 # 1,000,000 tickets: 500 accounts x 3 years
#   TICKETS=100000 benches/query_bench.sh  # a smaller run
#
# Generates the dataset once (release build of examples/query_bench.rs, the project's own
# writer) under $DATA, then times in one run, each engine and query in a process of its own:
#   tickets  one account's tickets of one year as JSON, conversations and notes nested
#   month    the monthly rollup of that account for that year
#   year     the yearly rollup over all accounts
# Times are in-process (median of $REPS after one warm-up run; the files are in the page cache
# for both engines). The CLI line is the real binary end to end, process start included.
# DuckDB's Python package goes into the project's venv (.venv, gitignored).
set -euo pipefail
cd "$(dirname "$0")/.."

TICKETS=${TICKETS:-1000000}
ACCOUNTS=${ACCOUNTS:-500}
YEARS=${YEARS:-3}
REPS=${REPS:-5}
target=${CARGO_TARGET_DIR:-target}
DATA=${DATA:-$target/bench/query-$TICKETS}
venv=.venv

if ! "$venv/bin/python" -c "import duckdb" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check duckdb
fi
cargo build --quiet --release --example query_bench --bin ticketsync
bench="$target/release/examples/query_bench"
cli="$target/release/ticketsync"

marker="$DATA/.generated-$TICKETS-$ACCOUNTS-$YEARS"
if [ ! -f "$marker" ]; then
  rm -rf "$DATA"
  echo "generating $TICKETS tickets ($ACCOUNTS accounts x $YEARS years) in $DATA" >&2
  /usr/bin/time -f '{"generate_wall_s":%e,"generate_peak_rss_kb":%M}' \
    "$bench" generate --data "$DATA" --tickets "$TICKETS" --accounts "$ACCOUNTS" --years "$YEARS"
  touch "$marker"
fi
du -sh "$DATA" >&2

# The account of the benchmark: the first one, the last year.
accounts=("$DATA"/tickets/account=*)
account=${accounts[0]##*/account=}
years=("$DATA/tickets/account=$account"/year=*)
year=${years[-1]##*/year=}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

results="$out/results.jsonl"
for query in tickets month year; do
  "$bench" run --data "$DATA" --query "$query" --account "$account" --year "$year" \
    --reps $((REPS + 1)) --out "$out/ts-$query.json" | tee -a "$results"
  for glob in dataset partition; do
    "$venv/bin/python" benches/query_bench.py --data "$DATA" --query "$query" --account "$account" \
      --year "$year" --glob $glob --reps $((REPS + 1)) --out "$out/duck-$glob-$query.json" | tee -a "$results"
  done
  # Same answer from both engines (JSON compared as values, not bytes).
  "$venv/bin/python" -c 'import json, sys; a, b = (json.load(open(f)) for f in sys.argv[1:]); assert a == b, sys.argv' \
    "$out/ts-$query.json" "$out/duck-dataset-$query.json"
  case $query in
    tickets) args=(--account "$account" --year "$year") ;;
    month) args=(--account "$account" --year "$year" --rollup month) ;;
    year) args=(--year "$year" --rollup year) ;;
  esac
  /usr/bin/time -f "{\"engine\":\"ticketsync-cli\",\"query\":\"$query\",\"wall_s\":%e,\"peak_rss_kb\":%M}" \
    "$cli" query --data "$DATA" "${args[@]}" --format json 2>&1 >"$out/cli-$query.json" \
    | tail -1 | tee -a "$results"
done

"$venv/bin/python" - "$results" "$TICKETS" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"\n{int(sys.argv[2]):,} tickets; median of the runs after the first (warm-up), in-process;"
      " duckdb = `**` glob + Hive filters, duckdb/p = partition directories in the path")
print(f"{'query':8} {'ticketsync':>11} {'duckdb':>9} {'ratio':>6} {'duckdb/p':>9} {'ratio':>6}"
      f" {'ts peak':>8} {'duck peak':>10} {'cli wall':>9} {'cli peak':>9}")
def pick(engine, q):
    return next(r for r in rows if r["engine"] == engine and r["query"] == q)
def median(r):
    return statistics.median(r["seconds"][1:] or r["seconds"])
for q in ["tickets", "month", "year"]:
    ts, dk, dp, cli = (pick(e, q) for e in ["ticketsync", "duckdb", "duckdb-partition", "ticketsync-cli"])
    t, d, p = median(ts), median(dk), median(dp)
    print(f"{q:8} {t*1000:9.1f}ms {d*1000:7.1f}ms {t/d:6.2f} {p*1000:7.1f}ms {t/p:6.2f}"
          f" {ts['peak_rss_kb']/1024:6.0f}MB {max(dk['peak_rss_kb'], dp['peak_rss_kb'])/1024:8.0f}MB"
          f" {cli['wall_s']*1000:7.0f}ms {cli['peak_rss_kb']/1024:7.0f}MB")
EOF
