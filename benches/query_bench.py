"""The query benchmark's DuckDB half: the SQL equivalent of each ticketsync query, over the same
files, timed in-process and written as JSON like ticketsync writes it.

Usage: python query_bench.py --data DIR --query tickets|month|year --account ACCT --year YYYY
                             [--glob dataset|partition] [--reps 5] [--out FILE]
--glob dataset (the default) reads `<table>/**/*.parquet` and leaves the pruning to DuckDB's
Hive filters, as an analyst would write it; --glob partition names the partition directories
in the path, which is what ticketsync does itself.
Prints one JSON line: the time of every repetition and the process's peak resident memory.
Every repetition uses a fresh connection (no cache carried over), as ticketsync opens the
dataset afresh.
"""
import argparse
import json
import time

import duckdb

p = argparse.ArgumentParser()
p.add_argument("--data", required=True)
p.add_argument("--query", required=True, choices=["tickets", "month", "year"])
p.add_argument("--account", required=True)
p.add_argument("--year", type=int, required=True)
p.add_argument("--reps", type=int, default=5)
p.add_argument("--out", default="/dev/null")
p.add_argument("--glob", default="dataset", choices=["dataset", "partition"])
a = p.parse_args()


def scan(table):
    if a.glob == "dataset":
        files = f"{a.data}/{table}/**/*.parquet"
    elif a.query == "year":
        files = f"{a.data}/{table}/*/year={a.year}/*.parquet"
    else:
        files = f"{a.data}/{table}/account={a.account}/year={a.year}/*.parquet"
    # The same Hive typing as ticketsync: an account number is text, never a number.
    return (f"read_parquet('{files}', hive_partitioning = true, "
            f"hive_types = {{'account': VARCHAR, 'year': INTEGER}})")


def iso(column):
    return f"strftime({column}, '%Y-%m-%dT%H:%M:%SZ')"


acct = a.account.replace("'", "''")
if a.query == "tickets":
    # One account-year's tickets with conversations and notes nested, oldest first.
    sql = f"""
    SELECT t.ticket_id, t.ticket_number, t.subject, t.description, t.description_text, t.status,
           t.priority, t.requester_email, t.requester_name, {iso('t.created_at')} AS created_at,
           {iso('t.last_updated_at')} AS last_updated_at, {iso('t.closed_at')} AS closed_at,
           t.total_hours_spent, t.billable_hours,
           coalesce(c.conversations, []) AS conversations, coalesce(n.notes, []) AS notes
    FROM {scan('tickets')} t
    LEFT JOIN (
        SELECT ticket_id, list({{'id': conversation_id, 'body': body, 'body_html': body_html,
            'from_email': from_email, 'to_emails': to_emails, 'created_at': {iso('created_at')},
            'updated_at': {iso('updated_at')}, 'incoming': incoming, 'private': private,
            'user_id': user_id, 'support_email': support_email}}
            ORDER BY created_at NULLS FIRST, conversation_id) AS conversations
        FROM {scan('conversations')} WHERE account = '{acct}' AND year = {a.year}
        GROUP BY ticket_id) c USING (ticket_id)
    LEFT JOIN (
        SELECT ticket_id, list({{'id': note_id, 'body': body, 'from_email': from_email,
            'created_at': {iso('created_at')}, 'private': true, 'user_id': user_id}}
            ORDER BY created_at NULLS FIRST, note_id) AS notes
        FROM {scan('notes')} WHERE account = '{acct}' AND year = {a.year}
        GROUP BY ticket_id) n USING (ticket_id)
    WHERE t.account = '{acct}' AND t.year = {a.year}
    ORDER BY t.closed_at, t.ticket_id"""
elif a.query == "month":
    # One account's months, empty months as zeros; hours from exact minutes, rounded when printed.
    sql = f"""
    WITH m AS (
        SELECT month(closed_at) AS month, count(*) AS tickets, sum(total_minutes) AS minutes,
               sum(billable_minutes) AS billable
        FROM {scan('tickets')} WHERE account = '{acct}' AND year = {a.year} GROUP BY ALL)
    SELECT '{acct}' AS account, printf('%d-%02d', {a.year}, g.month) AS period,
           coalesce(tickets, 0) AS tickets, round(coalesce(minutes, 0) / 60, 2) AS hours,
           round(coalesce(billable, 0) / 60, 2) AS billable_hours,
           round(coalesce(minutes - billable, 0) / 60, 2) AS non_billable_hours
    FROM range(1, 13) g(month) LEFT JOIN m USING (month)
    ORDER BY period"""
else:
    # Every account's year.
    sql = f"""
    SELECT account, '{a.year}' AS period, count(*) AS tickets,
           round(sum(total_minutes) / 60, 2) AS hours,
           round(sum(billable_minutes) / 60, 2) AS billable_hours,
           round(sum(total_minutes - billable_minutes) / 60, 2) AS non_billable_hours
    FROM {scan('tickets')} WHERE year = {a.year}
    GROUP BY account ORDER BY account"""

seconds = []
rows = 0
for _ in range(a.reps):
    started = time.perf_counter()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"COPY ({sql}) TO '{a.out}' (FORMAT json, ARRAY true)")
    seconds.append(time.perf_counter() - started)
    con.close()
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
rows = con.execute(f"SELECT count(*) FROM ({sql})").fetchone()[0]


def peak_rss_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


engine = "duckdb" if a.glob == "dataset" else "duckdb-partition"
print(json.dumps({"engine": engine, "duckdb": duckdb.__version__, "query": a.query, "rows": rows,
                  "seconds": seconds, "peak_rss_kb": peak_rss_kb()}))
