"""Interop check: DuckDB and pyarrow read every table of a ticketsync dataset unchanged.

Usage: python check_duckdb.py DATA_DIR [--upgraded]
(--upgraded: a dataset of the previous release after its upgrade; the added columns are null.)
Checks: hive partitioning (domain, account, year) is recognised, partition pruning works, the column
types are the contract's, a ticket is in tickets or rejects (never both), and children join.
"""
import json
import pathlib
import sys

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

data = pathlib.Path(sys.argv[1])
upgraded = "--upgraded" in sys.argv[2:]
schemas = {p.stem: json.loads(p.read_text()) for p in (pathlib.Path(__file__).parents[2] / "schemas").glob("*.json")}
con = duckdb.connect()
types = {"int64": "BIGINT", "int32": "INTEGER", "float64": "DOUBLE", "bool": "BOOLEAN", "utf8": "VARCHAR",
         "timestamp[ms, UTC]": "TIMESTAMP WITH TIME ZONE", "list<utf8>": "VARCHAR[]"}
arrow_types = {"int64": pa.int64(), "int32": pa.int32(), "float64": pa.float64(), "bool": pa.bool_(),
               "utf8": pa.string(), "timestamp[ms, UTC]": pa.timestamp("ms", tz="UTC"),
               "list<utf8>": pa.list_(pa.string())}

counts = {}
for table, contract in sorted(schemas.items()):
    # Every table is partitioned (rejects by domain alone). The glob names the partition
    # directories, so it never reads the Delta log's checkpoint files.
    partitioned = True
    glob = f"{data}/{table}/" + "/".join(f"{key}=*" for key in contract["partitioning"]) + "/*.parquet"
    rel = con.sql(f"SELECT * FROM read_parquet('{glob}', hive_partitioning = {str(partitioned).lower()})")
    described = dict(zip(rel.columns, [str(t) for t in rel.types]))
    for col in contract["columns"]:
        got = described.get(col["name"])
        assert got == types[col["type"]], f"{table}.{col['name']}: duckdb sees {got}, contract says {col['type']}"
    if table != "rejects":
        assert "account" in described and "year" in described, f"{table}: hive columns missing: {described}"
    counts[table] = con.execute(f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = {str(partitioned).lower()})").fetchone()[0]
    # pyarrow reads it too.
    dataset = ds.dataset(str(data / table), format="parquet", partitioning="hive" if partitioned else None)
    assert dataset.count_rows() == counts[table], f"{table}: pyarrow {dataset.count_rows()} vs duckdb {counts[table]}"
    for col in contract["columns"]:
        field = dataset.schema.field(col["name"])
        want = arrow_types[col["type"]]
        got = field.type
        # list<utf8>: the item field's name is not part of the contract.
        same = got.value_type == want.value_type if pa.types.is_list(want) and pa.types.is_list(got) else got == want
        assert same, f"{table}.{col['name']}: pyarrow sees {got}, contract says {col['type']}"

both = con.execute(f"""
  SELECT count(*) FROM read_parquet('{data}/tickets/domain=*/account=*/year=*/*.parquet', hive_partitioning = true) t
  JOIN read_parquet('{data}/rejects/domain=*/*.parquet') r USING (ticket_id)""").fetchone()[0]
assert both == 0, f"{both} tickets are in both tickets and rejects"
dupes = con.execute(f"""
  SELECT count(*) FROM (SELECT ticket_id FROM read_parquet('{data}/tickets/domain=*/account=*/year=*/*.parquet', hive_partitioning = true)
  GROUP BY ticket_id HAVING count(*) > 1)""").fetchone()[0]
assert dupes == 0, f"{dupes} duplicated tickets"
orphans = con.execute(f"""
  SELECT count(*) FROM read_parquet('{data}/time_entries/domain=*/account=*/year=*/*.parquet', hive_partitioning = true) e
  ANTI JOIN read_parquet('{data}/tickets/domain=*/account=*/year=*/*.parquet', hive_partitioning = true) t
  ON e.ticket_id = t.ticket_id AND e.account = t.account AND e.year = t.year""").fetchone()[0]
assert orphans == 0, f"{orphans} time entries outside their ticket's partition"
account, year = con.execute(f"""
  SELECT account, year FROM read_parquet('{data}/tickets/domain=*/account=*/year=*/*.parquet', hive_partitioning = true) LIMIT 1""").fetchone()
plan = con.execute(f"""EXPLAIN ANALYZE SELECT count(*) FROM read_parquet('{data}/tickets/domain=*/account=*/year=*/*.parquet', hive_partitioning = true)
  WHERE account = '{account}' AND year = {year}""").fetchall()
minutes = con.execute(f"""
  SELECT sum(minutes) FROM read_parquet('{data}/time_entries/domain=*/account=*/year=*/*.parquet', hive_partitioning = true)""").fetchone()[0]
# The analyst, SLA and billing columns (issue 11) hold values both readers agree on.
if upgraded:
    nulls = con.execute(f"""SELECT count(*) FILTER (WHERE workspace_id IS NULL AND custom_fields IS NULL), count(*)
      FROM read_parquet('{data}/tickets/domain=*/account=*/year=*/*.parquet', hive_partitioning = true)""").fetchone()
    assert nulls[0] == nulls[1] > 0, f"upgraded rows: {nulls}"
    print(json.dumps({"rows": counts}))
    print("duckdb and pyarrow read every table of the upgraded dataset with one schema")
    sys.exit(0)
tickets_glob = f"{data}/tickets/domain=*/account=*/year=*/*.parquet"
filled = con.execute(f"""
  SELECT count(*) FILTER (WHERE workspace_id IS NOT NULL), count(*) FILTER (WHERE group_name IS NOT NULL),
         count(*) FILTER (WHERE responder_name IS NOT NULL), count(*) FILTER (WHERE len(tags) > 0),
         count(*) FILTER (WHERE due_by IS NOT NULL AND fr_due_by IS NOT NULL),
         count(*) FILTER (WHERE first_responded_at IS NOT NULL AND first_resp_time_secs >= 0),
         count(*) FILTER (WHERE resolution_time_secs IS NOT NULL), count(*) FILTER (WHERE is_escalated IS NOT NULL),
         count(*)
  FROM read_parquet('{tickets_glob}', hive_partitioning = true)""").fetchone()
*some, total = filled
assert filled[0] == total and filled[7] == total, f"workspace_id/is_escalated missing: {filled}"
assert all(n > 0 for n in some), f"new ticket columns empty: {filled}"
tickets = ds.dataset(str(data / "tickets"), format="parquet", partitioning="hive").to_table(
    columns=["custom_fields", "tags"]).to_pylist()
for row in tickets:
    assert isinstance(json.loads(row["custom_fields"]), dict), row
attachments = ds.dataset(str(data / "conversations"), format="parquet", partitioning="hive").to_table(
    columns=["attachments"]).column("attachments").to_pylist()
files = [a for text in attachments if text is not None for a in json.loads(text)]
assert files and all(set(a) == {"name", "size", "content_type"} for a in files), files[:3]
entries = con.execute(f"""
  SELECT count(*) FILTER (WHERE agent_name IS NOT NULL), count(*) FILTER (WHERE start_time IS NOT NULL),
         count(*) FILTER (WHERE custom_fields IS NOT NULL), count(*)
  FROM read_parquet('{data}/time_entries/domain=*/account=*/year=*/*.parquet', hive_partitioning = true)""").fetchone()
assert entries[0] == entries[1] == entries[2] == entries[3], f"time entry columns: {entries}"
print(json.dumps({"rows": counts, "time_entry_minutes": minutes, "tickets_in_both": both, "duplicates": dupes}))
print("duckdb and pyarrow read every table")
