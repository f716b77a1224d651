#!/usr/bin/env bash
# Interop check: the demo job's dataset read by DuckDB and pyarrow as plain Parquet, and as Delta
# tables by delta-rs (the `deltalake` package) and DuckDB's delta extension; its metrics file by
# Python's prometheus-client parsers (all installed here, pinned, in a venv of the project's own,
# so a fresh machine needs nothing by hand). The DuckDB delta extension must match DuckDB's
# version exactly.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=.venv
readers="duckdb==1.5.5 duckdb-extension-delta==1.5.5 deltalake==1.6.6 pyarrow"
if ! "$venv/bin/python" -c "import duckdb, deltalake, pyarrow, duckdb_extension_delta; assert duckdb.__version__ == '1.5.5' and deltalake.__version__ == '1.6.6'" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check $readers
fi
if [ "$("$venv/bin/python" -c "import prometheus_client; print(prometheus_client.__version__)" 2>/dev/null)" != "0.26.0" ]; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check prometheus-client==0.26.0
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
cargo run --quiet --locked -- sync --job jobs/demo.toml --data "$out/data" --metrics-file "$out/ticketsync.prom" --log-format json 2>"$out/log" || status=$?
if [ "$status" -ne 0 ] && [ "$status" -ne 1 ]; then
  cat "$out/log"; echo "demo job failed with exit code $status"; exit 1
fi
"$venv/bin/python" tests/interop/check_duckdb.py "$out/data"
bin="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug/ticketsync"
"$venv/bin/python" tests/interop/check_delta.py "$out/data" "$bin"
"$venv/bin/python" tests/interop/check_metrics.py "$out/ticketsync.prom"

# A dataset of the previous release (tests/fixtures/dataset-v1), upgraded by a run that lists
# nothing: every file then has the contract's schema, read without union_by_name.
cp -r tests/fixtures/dataset-v1 "$out/old"
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
printf '%s\n' "data = \"$out/old\"" "since = \"$now\"" "rescan_days = 0" "reconcile = false" \
  "rate_window_secs = 0.5" "[simulator]" "tickets = 12" "seed = 7" "minute_secs = 0.5" \
  "latency_ms = 0" >"$out/upgrade.toml"
status=0
cargo run --quiet --locked -- sync --job "$out/upgrade.toml" --log-format json 2>"$out/log" || status=$?
if [ "$status" -ne 0 ]; then
  cat "$out/log"; echo "upgrade run failed with exit code $status"; exit 1
fi
test -f "$out/old/_state/format.json"
"$venv/bin/python" tests/interop/check_duckdb.py "$out/old" --upgraded
"$venv/bin/python" tests/interop/check_delta.py "$out/old" "$bin"
