#!/usr/bin/env bash
# The query benchmark (a measurement, not a test): `ticketsync query` against the DuckDB CLI,
# whole processes, on a Delta dataset neither of them wrote.
#
#   benches/query_bench.sh                  # 1,000,000 tickets of 500 accounts, a year of nightly commits
#   TICKETS=100000 benches/query_bench.sh   # a smaller one
#   ONLY=year,changes benches/query_bench.sh
#
# benches/query_gen.py writes the dataset once (pyarrow + delta-rs, from schemas/; kept under
# $DATA for reruns), benches/query_bench.py runs every query in a process of its own per engine
# and checks that all engines answer the same. Python packages go into the project's venv
# (.venv, gitignored), pinned: the delta extension must match DuckDB's version exactly.
set -euo pipefail
cd "$(dirname "$0")/.."

TICKETS=${TICKETS:-1000000}
ACCOUNTS=${ACCOUNTS:-500}
REPS=${REPS:-5}
target=${CARGO_TARGET_DIR:-target}
DATA=${DATA:-$target/bench/delta-$TICKETS}
venv=.venv
packages="duckdb==1.5.5 duckdb-cli==1.5.5 duckdb-extension-delta==1.5.5 deltalake==1.6.6 pyarrow numpy"

if ! "$venv/bin/python" -c "import duckdb, deltalake, numpy, pyarrow, duckdb_extension_delta" 2>/dev/null \
  || [ ! -x "$venv/bin/duckdb" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check $packages
fi
command -v /usr/bin/time > /dev/null || { echo "GNU time (/usr/bin/time) measures peak memory: apt-get install time"; exit 1; }
cargo build --quiet --release --locked --bin ticketsync
cli="$target/release/ticketsync"

marker="$DATA/.generated-$TICKETS-$ACCOUNTS"
if [ ! -f "$marker" ]; then
  rm -rf "$DATA"
  echo "generating $TICKETS tickets ($ACCOUNTS accounts, a year of nightly commits) in $DATA" >&2
  /usr/bin/time -f '{"generate_wall_s":%e,"generate_peak_rss_kb":%M}' \
    "$venv/bin/python" benches/query_gen.py --data "$DATA" --tickets "$TICKETS" --accounts "$ACCOUNTS"
  touch "$marker"
fi
du -sh "$DATA" >&2

"$venv/bin/python" benches/query_bench.py --data "$DATA" --ticketsync "$cli" \
  --duckdb "$venv/bin/duckdb" --reps "$REPS" ${ONLY:+--only "$ONLY"}
