"""The query benchmark's dataset: a year of nightly Delta commits, written without ticketsync.

Usage: python query_gen.py --data DIR [--tickets 1000000] [--accounts 500] [--seed 7]

An independent generator: the columns come from the contract (`schemas/*.json`), the rows from
numpy, the Parquet files, the Delta log and its checkpoints from delta-rs (the `deltalake`
package), as a shop that writes the contract with delta-rs would leave them. None of
ticketsync's code writes a byte.

Three closed years (2024 to 2026) of tickets of `--accounts` customers of one Freshservice
account, `acme`, with about 4 public conversations, 1.5 private notes and 2.2 time entries per
ticket. The first commit holds everything closed before the nightly runs started; then 364
nightly commits append what closed that day; every seventh night late time entries move 100
tickets of the last 60 days (an update of their rows: hours and last update, the adjustment
Ledger's `--changes-since` lists); on the first of every month `optimize.compact()` merges the
small files. delta-rs writes a checkpoint every 100 commits. Each commit file then gets the
night's time (mtime and `commitInfo.timestamp`), so `--as-of` and Delta time travel by
timestamp see a year of history.

Prints one JSON line: the night of every commit, for the benchmark's `--as-of` and
`--changes-since` instants.
"""
import argparse
import datetime as dt
import json
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, write_deltalake

p = argparse.ArgumentParser()
p.add_argument("--data", required=True)
p.add_argument("--tickets", type=int, default=1_000_000)
p.add_argument("--accounts", type=int, default=500)
p.add_argument("--seed", type=int, default=7)
a = p.parse_args()

DOMAIN = "acme"
UTC = dt.timezone.utc
FIRST = dt.datetime(2024, 1, 1, tzinfo=UTC)
# The last nightly run: 2026-12-02 at 02:00; the first, 364 nights before.
LAST_NIGHT = dt.datetime(2026, 12, 2, 2, tzinfo=UTC)
NIGHTS = 364
FIRST_NIGHT = LAST_NIGHT - dt.timedelta(days=NIGHTS - 1)
HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(a.seed)


def contract(table):
    with open(os.path.join(HERE, "..", "schemas", f"{table}.json")) as f:
        return json.load(f)


TYPES = {
    "int64": pa.int64(),
    "int32": pa.int32(),
    "utf8": pa.string(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "timestamp[ms, UTC]": pa.timestamp("ms", tz="UTC"),
    "list<utf8>": pa.list_(pa.string()),
}


def schema(table):
    c = contract(table)
    fields = [pa.field(col["name"], TYPES[col["type"]], col["nullable"]) for col in c["columns"]]
    fields += [pa.field("domain", pa.string(), False), pa.field("account", pa.string(), False),
               pa.field("year", pa.int32(), False)]
    return pa.schema(fields), c["partitioning"]


def stats_columns(table):
    # As ticketsync keeps them: ids and times, nothing a person wrote.
    return ",".join(col["name"] for col in contract(table)["columns"]
                    if col["type"] == "timestamp[ms, UTC]"
                    or (col["type"] == "int64" and col["name"].endswith("_id")))


WORDS = np.array(("printer network outage vpn password reset mailbox license laptop server "
                  "backup firewall update invoice access share drive monitor phone onboarding "
                  "offboarding account locked slow wifi install error crash sync calendar teams "
                  "outlook excel scanner router switch patch certificate expired renewal quote "
                  "replace battery keyboard mouse docking station screen flicker").split())
POOL = np.array([" ".join(rng.choice(WORDS, int(rng.integers(6, 16)))).capitalize() + "."
                 for _ in range(50_000)])


def text(n, sentences):
    parts = [pa.array(POOL[rng.integers(0, len(POOL), n)]) for _ in range(sentences)]
    return pc.binary_join_element_wise(*parts, " ")


def html(plain):
    return pc.binary_join_element_wise(pa.scalar("<div><p>"), plain, pa.scalar("</p></div>"), "")


def ms(values):
    return pa.array(values.astype("datetime64[ms]"), pa.timestamp("ms", tz="UTC"))


def emails(prefix, n, pool):
    return pa.array(np.char.add(np.char.add(prefix, rng.integers(0, pool, n).astype(str)),
                                "@example.com"))


# ------------------------------------------------------------------------------------------
# Every ticket, up front (its children are made when its night comes).
n = a.tickets
accounts = np.array([str(100_000 + i * 1_777 % 900_000) for i in range(a.accounts)])
span = (LAST_NIGHT - FIRST).total_seconds()
first_ms = int(FIRST.timestamp() * 1000)
created = np.sort(first_ms + (rng.random(n) * span * 1000).astype(np.int64))
closed = created + (rng.exponential(2 * 86_400, n) * 1000).astype(np.int64) + 1_800_000
closed = np.minimum(closed, int(LAST_NIGHT.timestamp() * 1000) - 60_000)
order = np.argsort(closed, kind="stable")
created, closed = created[order], closed[order]
ids = 100_000 + np.argsort(np.argsort(created, kind="stable"), kind="stable")
updated = closed + rng.integers(0, 600_000, n)
account = accounts[rng.integers(0, a.accounts, n)]
years = (closed.astype("datetime64[ms]").astype("datetime64[Y]").astype(int) + 1970).astype(np.int32)
entry_counts = rng.poisson(2.2, n)
conversation_counts = rng.poisson(4.0, n)
note_counts = rng.poisson(1.5, n)
MINUTES = np.array([15, 30, 45, 60, 90, 120])
# The minutes of every time entry, ticket by ticket, and each ticket's sum.
entry_minutes = MINUTES[rng.integers(0, len(MINUTES), entry_counts.sum())]
entry_billable = rng.random(entry_counts.sum()) < 0.8
entry_start = np.concatenate([[0], np.cumsum(entry_counts)])
total = np.add.reduceat(entry_minutes, entry_start[:-1]) if n else np.array([])
total = np.where(entry_counts > 0, total, 0)
billable = np.add.reduceat(np.where(entry_billable, entry_minutes, 0), entry_start[:-1])
billable = np.where(entry_counts > 0, billable, 0)
defaulted = entry_counts == 0
# Without time entries, the job's default hours (a quarter of an hour, billable).
total = np.where(defaulted, 15, total).astype(np.int64)
billable = np.where(defaulted, 15, billable).astype(np.int64)
next_child_id = [10_000_000]


def child_ids(count):
    start = next_child_id[0]
    next_child_id[0] += count
    return np.arange(start, start + count, dtype=np.int64)


def tickets_batch(idx):
    k = len(idx)
    sch, _ = schema("tickets")
    subject = text(k, 1)
    desc = text(k, 2)
    cols = {
        "ticket_id": pa.array(ids[idx]),
        "company_account_number": pa.array(account[idx]),
        "ticket_number": pa.array(ids[idx].astype(str)),
        "subject": subject,
        "description": html(desc),
        "description_text": desc,
        "status": pa.array(np.where(rng.random(k) < 0.9, "Closed", "Resolved")),
        "priority": pa.array(np.array(["Low", "Medium", "High", "Urgent"])[rng.integers(0, 4, k)]),
        "requester_email": emails("user", k, 20_000),
        "requester_name": pa.array(np.char.add("User ", rng.integers(0, 20_000, k).astype(str))),
        "created_at": ms(created[idx]),
        "last_updated_at": ms(updated[idx]),
        "closed_at": ms(closed[idx]),
        "total_hours_spent": pa.array(total[idx] / 60.0),
        "billable_hours": pa.array(billable[idx] / 60.0),
        "total_minutes": pa.array(total[idx]),
        "billable_minutes": pa.array(billable[idx]),
        "hours_defaulted": pa.array(defaulted[idx]),
        "department_id": pa.array(rng.integers(1, 600, k)),
        "requester_id": pa.array(rng.integers(1, 20_000, k)),
        "responder_id": pa.array(rng.integers(1, 40, k)),
        "group_id": pa.array(rng.integers(1, 10, k)),
        "ticket_type": pa.array(np.where(rng.random(k) < 0.7, "Incident", "Service Request")),
        "source": pa.array(rng.integers(1, 10, k)),
        "conversation_count": pa.array(conversation_counts[idx].astype(np.int32)),
        "note_count": pa.array(note_counts[idx].astype(np.int32)),
        "time_entry_count": pa.array(entry_counts[idx].astype(np.int32)),
        "synced_at": ms(updated[idx] + 3_600_000),
        "due_by": ms(created[idx] + 3 * 86_400_000),
        "resolved_at": ms(closed[idx]),
        "first_responded_at": ms(created[idx] + 1_800_000),
        "first_resp_time_secs": pa.array(np.full(k, 1800, dtype=np.int64)),
        "resolution_time_secs": pa.array((closed[idx] - created[idx]) // 1000),
        "responder_email": emails("agent", k, 40),
        "domain": pa.array(np.full(k, DOMAIN)),
        "account": pa.array(account[idx]),
        "year": pa.array(years[idx]),
    }
    return table_of(sch, cols, k)


def table_of(sch, cols, k):
    arrays = [cols[f.name] if f.name in cols else pa.nulls(k, f.type) for f in sch]
    return pa.Table.from_arrays([arr.cast(f.type) for arr, f in zip(arrays, sch)], schema=sch)


def children(idx, counts, table, id_name, extra):
    k = int(counts[idx].sum())
    sch, _ = schema(table)
    owner = np.repeat(idx, counts[idx])
    cols = {
        "ticket_id": pa.array(ids[owner]),
        id_name: pa.array(child_ids(k)),
        "domain": pa.array(np.full(k, DOMAIN)),
        "account": pa.array(account[owner]),
        "year": pa.array(years[owner]),
    }
    cols.update(extra(owner, k))
    return table_of(sch, cols, k)


def message(owner, k):
    body = text(k, 3)
    at = created[owner] + ((closed[owner] - created[owner]) * rng.random(k)).astype(np.int64)
    return {
        "body": body,
        "body_html": html(body),
        "from_email": emails("user", k, 20_000),
        "to_emails": pa.array([["helpdesk@example.com"]] * k, pa.list_(pa.string())),
        "created_at": ms(at),
        "updated_at": ms(at),
        "incoming": pa.array(rng.random(k) < 0.5),
        "private": pa.array(np.zeros(k, dtype=bool)),
        "user_id": pa.array(rng.integers(1, 20_000, k)),
        "support_email": pa.array(np.full(k, "helpdesk@example.com")),
    }


def note(owner, k):
    cols = message(owner, k)
    del cols["private"]
    cols["from_email"] = emails("agent", k, 40)
    return cols


def entries_of(idx):
    sch, _ = schema("time_entries")
    owner = np.repeat(idx, entry_counts[idx])
    pos = np.concatenate([np.arange(entry_start[i], entry_start[i + 1]) for i in idx]) \
        if len(idx) else np.array([], dtype=np.int64)
    k = len(owner)
    minutes = entry_minutes[pos].astype(np.int64)
    cols = {
        "ticket_id": pa.array(ids[owner]),
        "time_entry_id": pa.array(child_ids(k)),
        "agent_id": pa.array(rng.integers(1, 40, k)),
        "agent_email": emails("agent", k, 40),
        "minutes": pa.array(minutes),
        "hours": pa.array(minutes / 60.0),
        "billable": pa.array(entry_billable[pos]),
        "timer_running": pa.array(np.zeros(k, dtype=bool)),
        "executed_at": ms(closed[owner] - 3_600_000),
        "note": text(k, 1),
        "domain": pa.array(np.full(k, DOMAIN)),
        "account": pa.array(account[owner]),
        "year": pa.array(years[owner]),
    }
    return table_of(sch, cols, k)


def late_entries(owner, at_ms):
    sch, _ = schema("time_entries")
    k = len(owner)
    cols = {
        "ticket_id": pa.array(ids[owner]),
        "time_entry_id": pa.array(child_ids(k)),
        "agent_id": pa.array(rng.integers(1, 40, k)),
        "agent_email": emails("agent", k, 40),
        "minutes": pa.array(np.full(k, 30, dtype=np.int64)),
        "hours": pa.array(np.full(k, 0.5)),
        "billable": pa.array(np.ones(k, dtype=bool)),
        "timer_running": pa.array(np.zeros(k, dtype=bool)),
        "executed_at": ms(np.full(k, at_ms - 3_600_000)),
        "note": text(k, 1),
        "domain": pa.array(np.full(k, DOMAIN)),
        "account": pa.array(account[owner]),
        "year": pa.array(years[owner]),
    }
    return table_of(sch, cols, k)


TABLES = ["tickets", "conversations", "notes", "time_entries"]
os.makedirs(a.data, exist_ok=True)
uris = {t: os.path.join(a.data, t) for t in TABLES}
commit_nights = {t: [] for t in TABLES}
# Each table stays open: a write then reads only the commits it has not seen.
opened = {}


def append(table, data, night):
    _, parts = schema(table)
    if table not in opened:
        config = {"delta.dataSkippingStatsColumns": stats_columns(table)}
        write_deltalake(uris[table], data, mode="append", partition_by=parts,
                        configuration=config)
        opened[table] = DeltaTable(uris[table])
    else:
        write_deltalake(opened[table], data, mode="append", partition_by=parts)
    commit_nights[table].append(night)


def write_night(idx, night):
    append("tickets", tickets_batch(idx), night)
    append("conversations", children(idx, conversation_counts, "conversations",
                                     "conversation_id", message), night)
    append("notes", children(idx, note_counts, "notes", "note_id", note), night)
    append("time_entries", entries_of(idx), night)


started = time.time()
night_ms = lambda night: int(night.timestamp() * 1000)  # noqa: E731
bulk = np.nonzero(closed < night_ms(FIRST_NIGHT - dt.timedelta(days=1)))[0]
write_night(bulk, FIRST_NIGHT - dt.timedelta(days=1))
done = len(bulk)
late = 0
for night_no in range(NIGHTS):
    night = FIRST_NIGHT + dt.timedelta(days=night_no)
    upto = int(np.searchsorted(closed, night_ms(night)))
    write_night(np.arange(done, upto), night)
    done = upto
    if night_no % 7 == 6:
        # Late time entries on 100 tickets closed in the last 60 days: 30 billable minutes each,
        # the ticket updated tonight.
        recent = np.nonzero(closed[:done] >= night_ms(night - dt.timedelta(days=60)))[0]
        owner = np.sort(rng.choice(recent, min(100, len(recent)), replace=False))
        at = night_ms(night) - 1_800_000
        total[owner] += 30
        billable[owner] += 30
        updated[owner] = at
        entry_counts[owner] += 1
        append("time_entries", late_entries(owner, at), night)
        id_list = ",".join(str(i) for i in ids[owner])
        stamp = dt.datetime.fromtimestamp(at / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        opened["tickets"].update(
            predicate=f"ticket_id IN ({id_list})",
            updates={
                "total_minutes": "total_minutes + 30",
                "billable_minutes": "billable_minutes + 30",
                "total_hours_spent": "total_hours_spent + 0.5",
                "billable_hours": "billable_hours + 0.5",
                "time_entry_count": "time_entry_count + 1",
                "hours_defaulted": "false",
                "last_updated_at": f"arrow_cast('{stamp}', 'Timestamp(Microsecond, Some(\"UTC\"))')",
            },
        )
        commit_nights["tickets"].append(night)
        late += len(owner)
    if night.day == 1:
        for t in TABLES:
            metrics = opened[t].optimize.compact()
            if metrics["numFilesAdded"] or metrics["numFilesRemoved"]:
                commit_nights[t].append(night)

# Each commit at its night: the file's mtime and its commitInfo.timestamp.
for t in TABLES:
    log = os.path.join(uris[t], "_delta_log")
    for version, night in enumerate(commit_nights[t]):
        path = os.path.join(log, f"{version:020}.json")
        stamp = int(night.timestamp())
        with open(path) as f:
            lines = f.read().splitlines()
        for i, line in enumerate(lines):
            action = json.loads(line)
            if "commitInfo" in action:
                action["commitInfo"]["timestamp"] = stamp * 1000
                lines[i] = json.dumps(action)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.utime(path, (stamp, stamp))
os.makedirs(os.path.join(a.data, "_state"), exist_ok=True)
with open(os.path.join(a.data, "_state", "format.json"), "w") as f:
    json.dump({"format": 4, "domain": DOMAIN}, f)

dts = {t: DeltaTable(uris[t]) for t in TABLES}
print(json.dumps({
    "tickets": n, "accounts": a.accounts, "late_updates": late,
    "versions": {t: d.version() for t, d in dts.items()},
    "files": {t: len(d.file_uris()) for t, d in dts.items()},
    "checkpoints": sorted(f for f in os.listdir(os.path.join(uris["tickets"], "_delta_log"))
                          if "checkpoint" in f),
    "first_night": FIRST_NIGHT.isoformat(), "last_night": LAST_NIGHT.isoformat(),
    "seconds": round(time.time() - started, 1),
}))
