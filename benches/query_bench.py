"""The query benchmark: `ticketsync query` against the DuckDB CLI, whole processes, same data.

Usage: python query_bench.py --data DIR --ticketsync BIN --duckdb BIN [--reps 5]
                             [--account ACCT] [--year 2026] [--since 2026-11-01T00:00:00Z]

For every query, each engine runs as a process of its own, `--reps` times after one warm-up
(the files are then in the page cache for all of them): ticketsync's CLI; the DuckDB CLI over
the Delta tables (`delta_scan`, its delta extension: delta-kernel-rs); and the DuckDB CLI over
the plain Parquet files, handed exactly the active files of the partitions the query needs (the
list is made before the clock starts, so this DuckDB reads no log at all). Wall time and peak
resident memory (GNU time) of each process; the answers of all three must be equal as JSON
values, or the benchmark fails.

Queries (what Ledger and analysts ask):
  tickets   one account's tickets last updated in a year, conversations and notes nested
  all       one account's tickets of every year (Ledger's invoice path)
  month     one account's monthly rollup of a year
  year      every account's yearly rollup
  changes   every account's months whose hours changed since an instant (`--changes-since`)
  asof      one account's monthly rollup as the tables were at that instant (`--as-of`)

Prints a table and one JSON line per engine and query.
"""
import argparse
import datetime as dt
import glob
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import pyarrow as pa
from deltalake import DeltaTable

p = argparse.ArgumentParser()
p.add_argument("--data", required=True)
p.add_argument("--ticketsync", required=True)
p.add_argument("--duckdb", required=True)
p.add_argument("--reps", type=int, default=5)
p.add_argument("--account")
p.add_argument("--year", type=int, default=2026)
p.add_argument("--since", default="2026-11-01T00:00:00Z")
p.add_argument("--only", help="comma-separated queries")
a = p.parse_args()
data = pathlib.Path(a.data).resolve()
since = dt.datetime.fromisoformat(a.since.replace("Z", "+00:00"))
TABLES = ["tickets", "conversations", "notes", "time_entries"]
tables = {t: DeltaTable(str(data / t)) for t in TABLES}
if a.account is None:
    a.account = sorted({f.split("account=")[1].split("/")[0] for f in tables["tickets"].file_uris()})[0]
acct = a.account
Y = a.year

import duckdb  # noqa: E402  (the package only to find its delta extension)

extension = glob.glob(str(pathlib.Path(duckdb.__file__).parents[1] / "duckdb_extension_delta"
                          / "extensions" / f"v{duckdb.__version__}" / "delta.duckdb_extension"))[0]


def version_at(table):
    t = DeltaTable(str(data / table))
    t.load_as_version(since)
    return t.version()


def active_files(table, version=None, account=None, max_year=None):
    t = DeltaTable(str(data / table), version=version)
    out = []
    for action in pa.table(t.get_add_actions(flatten=True)).to_pylist():
        if account is not None and action["partition.account"] != account:
            continue
        if max_year is not None and int(action["partition.year"]) > max_year:
            continue
        out.append(str(data / table / action["path"]))
    return sorted(out)


def iso(c):
    # As ticketsync writes instants: seconds, and milliseconds only when there are any.
    return (f"CASE WHEN {c} IS NULL THEN NULL ELSE strftime({c}, '%Y-%m-%dT%H:%M:%S') || "
            f"CASE WHEN epoch_ms({c}) % 1000 = 0 THEN '' ELSE '.' || "
            f"lpad((epoch_ms({c}) % 1000)::VARCHAR, 3, '0') END || 'Z' END")


def hours(minutes):
    return f"round({minutes} / 60, 2)"


def sql(query, source):
    """The SQL of `query`; `source(table, version, account, max_year)` names the rows."""
    if query in ("tickets", "all"):
        years = f"AND year <= {Y}" if query == "tickets" else ""
        updated = f"AND year(t.last_updated_at) = {Y}" if query == "tickets" else ""
        max_year = Y if query == "tickets" else None

        def src(table):
            return source(table, None, acct, max_year)
        return f"""
        SELECT t.ticket_id, t.ticket_number, t.subject, t.description, t.description_text,
               t.status, t.priority, t.requester_email, t.requester_name,
               {iso('t.created_at')} AS created_at, {iso('t.last_updated_at')} AS last_updated_at,
               {iso('t.closed_at')} AS closed_at, t.total_hours_spent, t.billable_hours, t.domain,
               coalesce(c.conversations, []) AS conversations, coalesce(n.notes, []) AS notes
        FROM {src('tickets')} t
        LEFT JOIN (
            SELECT domain, ticket_id, list({{'id': conversation_id, 'body': body,
                'body_html': body_html, 'from_email': from_email, 'to_emails': to_emails,
                'created_at': {iso('created_at')}, 'updated_at': {iso('updated_at')},
                'incoming': incoming, 'private': private, 'user_id': user_id,
                'support_email': support_email}} ORDER BY created_at NULLS FIRST, conversation_id)
                AS conversations
            FROM {src('conversations')} WHERE account = '{acct}' {years}
            GROUP BY domain, ticket_id) c USING (domain, ticket_id)
        LEFT JOIN (
            SELECT domain, ticket_id, list({{'id': note_id, 'body': body, 'body_html': body_html,
                'from_email': from_email, 'to_emails': coalesce(to_emails, []),
                'created_at': {iso('created_at')}, 'updated_at': {iso('updated_at')},
                'incoming': coalesce(incoming, false), 'private': true, 'user_id': user_id,
                'support_email': support_email}} ORDER BY created_at NULLS FIRST, note_id) AS notes
            FROM {src('notes')} WHERE account = '{acct}' {years}
            GROUP BY domain, ticket_id) n USING (domain, ticket_id)
        WHERE t.account = '{acct}' {years.replace('year', 't.year')} {updated}
        ORDER BY t.closed_at, t.ticket_id, t.domain"""
    if query in ("month", "asof"):
        version = versions["tickets"] if query == "asof" else None
        return f"""
        WITH m AS (
            SELECT month(last_updated_at) AS month, count(*) AS tickets,
                   sum(total_minutes) AS minutes, sum(billable_minutes) AS billable
            FROM {source('tickets', version, acct, Y)}
            WHERE account = '{acct}' AND year <= {Y} AND year(last_updated_at) = {Y}
            GROUP BY ALL)
        SELECT '{acct}' AS account, printf('%d-%02d', {Y}, g.month) AS period,
               'updated' AS basis, coalesce(tickets, 0) AS tickets,
               {hours('coalesce(minutes, 0)')} AS hours,
               {hours('coalesce(billable, 0)')} AS billable_hours,
               {hours('coalesce(minutes - billable, 0)')} AS non_billable_hours
        FROM range(1, 13) g(month) LEFT JOIN m USING (month)
        ORDER BY period"""
    if query == "year":
        return f"""
        SELECT account, '{Y}' AS period, 'updated' AS basis, count(*) AS tickets,
               {hours('sum(total_minutes)')} AS hours,
               {hours('sum(billable_minutes)')} AS billable_hours,
               {hours('sum(total_minutes - billable_minutes)')} AS non_billable_hours
        FROM {source('tickets', None, None, Y)}
        WHERE year <= {Y} AND year(last_updated_at) = {Y}
        GROUP BY account ORDER BY account"""
    if query == "changes":
        def side(version):
            return f"""
            SELECT domain, account, printf('%d-%02d', {Y}, month(last_updated_at)) AS month,
                   ticket_id, total_minutes AS minutes
            FROM {source('tickets', version, None, Y)}
            WHERE year <= {Y} AND year(last_updated_at) = {Y}"""
        return f"""
        WITH after AS ({side(None)}), before AS ({side(versions['tickets'])}),
        joined AS (
            SELECT coalesce(n.domain, t.domain) AS domain, coalesce(n.account, t.account) AS account,
                   coalesce(n.month, t.month) AS month, coalesce(n.ticket_id, t.ticket_id) AS ticket_id,
                   t.minutes AS then_minutes, n.minutes AS now_minutes
            FROM after n FULL OUTER JOIN before t USING (domain, account, month, ticket_id))
        SELECT domain, account, month, {hours('coalesce(sum(then_minutes), 0)')} AS hours_then,
               {hours('coalesce(sum(now_minutes), 0)')} AS hours_now,
               list(ticket_id ORDER BY ticket_id) FILTER (
                   WHERE then_minutes IS DISTINCT FROM now_minutes) AS tickets
        FROM joined GROUP BY domain, account, month
        HAVING coalesce(sum(then_minutes), 0) <> coalesce(sum(now_minutes), 0)
        ORDER BY domain, account, month"""
    raise ValueError(query)


def delta_source(table, version, account, max_year):
    v = f", version => {version}" if version is not None else ""
    return f"delta_scan('{data / table}'{v})"


def parquet_source(table, version, account, max_year):
    files = active_files(table, version, account, max_year)
    listed = ", ".join(f"'{f}'" for f in files)
    return (f"read_parquet([{listed}], hive_partitioning = true, union_by_name = true, "
            f"hive_types = {{'domain': VARCHAR, 'account': VARCHAR, 'year': INTEGER}})")


def cli_args(query):
    base = [a.ticketsync, "query", "--data", str(data), "--format", "json"]
    return base + {
        "tickets": ["--account", acct, "--year", str(Y)],
        "all": ["--account", acct],
        "month": ["--account", acct, "--year", str(Y), "--rollup", "month"],
        "year": ["--year", str(Y), "--rollup", "year"],
        "changes": ["--year", str(Y), "--rollup", "month", "--changes-since", a.since],
        "asof": ["--account", acct, "--year", str(Y), "--rollup", "month", "--as-of", a.since],
    }[query]


def run(args, out):
    """Runs one process to completion: (wall seconds, peak RSS in KB)."""
    with open(out, "wb") as f:
        started = time.perf_counter()
        # GNU time measures the peak: a child of this interpreter would count its pages too.
        proc = subprocess.run(["/usr/bin/time", "-f", "%M", *args], stdout=f,
                              stderr=subprocess.PIPE)
        wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{args[0]} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return wall, int(proc.stderr.decode().split()[-1])


def duck_args(script_path, query_sql, out_json):
    with open(script_path, "w") as f:
        f.write("SET autoinstall_known_extensions = false; SET autoload_known_extensions = false;\n")
        f.write(f"LOAD '{extension}'; SET TimeZone = 'UTC';\n")
        f.write(f"COPY ({query_sql}) TO '{out_json}' (FORMAT json, ARRAY true);\n")
    return [a.duckdb, "-unsigned", "-bail", "-init", "/dev/null", "-f", script_path]


def normalized(path):
    with open(path) as f:
        text = f.read().strip()
    return json.loads(text) if text else []


versions = {t: version_at(t) for t in TABLES}
queries = (a.only or "tickets,all,month,year,changes,asof").split(",")
rows = []
with tempfile.TemporaryDirectory() as tmp:
    for q in queries:
        engines = {
            "ticketsync": lambda out, q=q: cli_args(q),
            "duckdb-delta": lambda out, q=q: duck_args(f"{tmp}/{q}-d.sql", sql(q, delta_source), out),
            "duckdb-parquet": lambda out, q=q: duck_args(f"{tmp}/{q}-p.sql", sql(q, parquet_source), out),
        }
        answers = {}
        for engine, make in engines.items():
            out = f"{tmp}/{q}-{engine}.json"
            args = make(f"{tmp}/{q}-{engine}.duck.json")
            runs = [run(args, out) for _ in range(a.reps + 1)][1:]
            answer = out if engine == "ticketsync" else f"{tmp}/{q}-{engine}.duck.json"
            answers[engine] = normalized(answer)
            row = {"query": q, "engine": engine,
                   "wall_ms": round(statistics.median(r[0] for r in runs) * 1000, 1),
                   "peak_mb": round(max(r[1] for r in runs) / 1024, 1),
                   "rows": len(answers[engine])}
            rows.append(row)
            print(json.dumps(row), flush=True)
        for engine, answer in answers.items():
            if answer != answers["ticketsync"]:
                sys.exit(f"{q}: {engine} answered differently from ticketsync "
                         f"({len(answer)} vs {len(answers['ticketsync'])} rows)")

print(f"\n{a.data}: account {acct}, year {Y}, since {a.since}; median of {a.reps} runs after a "
      "warm-up, whole process")
print(f"{'query':8} {'ticketsync':>11} {'duckdb delta':>13} {'ratio':>6} {'duckdb files':>13} "
      f"{'ratio':>6} {'peak ts / delta / files':>25} {'rows':>6}")
for q in queries:
    ts, dd, dp = (next(r for r in rows if r["query"] == q and r["engine"] == e)
                  for e in ["ticketsync", "duckdb-delta", "duckdb-parquet"])
    print(f"{q:8} {ts['wall_ms']:9.1f}ms {dd['wall_ms']:11.1f}ms {ts['wall_ms'] / dd['wall_ms']:6.2f}"
          f" {dp['wall_ms']:11.1f}ms {ts['wall_ms'] / dp['wall_ms']:6.2f}"
          f" {ts['peak_mb']:9.0f} / {dd['peak_mb']:.0f} / {dp['peak_mb']:.0f} MB {ts['rows']:6}")
