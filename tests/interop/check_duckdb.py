"""Interop check: DuckDB and pyarrow read every table of a ticketsync dataset unchanged.

Usage: python check_duckdb.py DATA_DIR
Checks: hive partitioning (account, year) is recognised, partition pruning works, the column
types are the contract's, a ticket is in tickets or rejects (never both), and children join.
"""
import json
import pathlib
import sys

import duckdb
import pyarrow.dataset as ds

data = pathlib.Path(sys.argv[1])
schemas = {p.stem: json.loads(p.read_text()) for p in (pathlib.Path(__file__).parents[2] / "schemas").glob("*.json")}
con = duckdb.connect()
types = {"int64": "BIGINT", "int32": "INTEGER", "float64": "DOUBLE", "bool": "BOOLEAN", "utf8": "VARCHAR",
         "timestamp[ms, UTC]": "TIMESTAMP WITH TIME ZONE", "list<utf8>": "VARCHAR[]"}

counts = {}
for table, contract in sorted(schemas.items()):
    partitioned = bool(contract["partitioning"])
    glob = f"{data}/{table}/**/*.parquet" if partitioned else f"{data}/{table}/*.parquet"
    rel = con.sql(f"SELECT * FROM read_parquet('{glob}', hive_partitioning = {str(partitioned).lower()})")
    described = dict(zip(rel.columns, [str(t) for t in rel.types]))
    for col in contract["columns"]:
        got = described.get(col["name"])
        assert got == types[col["type"]], f"{table}.{col['name']}: duckdb sees {got}, contract says {col['type']}"
    if partitioned:
        assert "account" in described and "year" in described, f"{table}: hive columns missing: {described}"
    counts[table] = con.execute(f"SELECT count(*) FROM read_parquet('{glob}', hive_partitioning = {str(partitioned).lower()})").fetchone()[0]
    # pyarrow reads it too.
    dataset = ds.dataset(str(data / table), format="parquet", partitioning="hive" if partitioned else None)
    assert dataset.count_rows() == counts[table], f"{table}: pyarrow {dataset.count_rows()} vs duckdb {counts[table]}"

both = con.execute(f"""
  SELECT count(*) FROM read_parquet('{data}/tickets/**/*.parquet', hive_partitioning = true) t
  JOIN read_parquet('{data}/rejects/*.parquet') r USING (ticket_id)""").fetchone()[0]
assert both == 0, f"{both} tickets are in both tickets and rejects"
dupes = con.execute(f"""
  SELECT count(*) FROM (SELECT ticket_id FROM read_parquet('{data}/tickets/**/*.parquet', hive_partitioning = true)
  GROUP BY ticket_id HAVING count(*) > 1)""").fetchone()[0]
assert dupes == 0, f"{dupes} duplicated tickets"
orphans = con.execute(f"""
  SELECT count(*) FROM read_parquet('{data}/time_entries/**/*.parquet', hive_partitioning = true) e
  ANTI JOIN read_parquet('{data}/tickets/**/*.parquet', hive_partitioning = true) t
  ON e.ticket_id = t.ticket_id AND e.account = t.account AND e.year = t.year""").fetchone()[0]
assert orphans == 0, f"{orphans} time entries outside their ticket's partition"
account, year = con.execute(f"""
  SELECT account, year FROM read_parquet('{data}/tickets/**/*.parquet', hive_partitioning = true) LIMIT 1""").fetchone()
plan = con.execute(f"""EXPLAIN ANALYZE SELECT count(*) FROM read_parquet('{data}/tickets/**/*.parquet', hive_partitioning = true)
  WHERE account = '{account}' AND year = {year}""").fetchall()
minutes = con.execute(f"""
  SELECT sum(minutes) FROM read_parquet('{data}/time_entries/**/*.parquet', hive_partitioning = true)""").fetchone()[0]
print(json.dumps({"rows": counts, "time_entry_minutes": minutes, "tickets_in_both": both, "duplicates": dupes}))
print("duckdb and pyarrow read every table")
