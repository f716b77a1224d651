//! Issue 11 part 2: the columns analysts, SLA reports and billing read, end to end from the
//! simulator's ground truth to the written Parquet; and partition files without these columns
//! keep syncing (null-filled when a partition is rewritten).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use ticketsync::error::Classify;

use arrow::array::{
    Array, BooleanArray, Int64Array, ListArray, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::Schema;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use ticketsync::sim::GroundTruth;
use ticketsync::tables::Table;

use crate::support::{added_columns, canonical_rows, read_parquet, Harness};

/// Every row of a table as (partition dir, batch), each batch checked against the contract.
async fn batches(h: &Harness, table: Table) -> Vec<(String, RecordBatch)> {
    let mut out = Vec::new();
    for path in crate::support::data_files(&h.storage, table).await {
        let dir = path.as_ref().rsplit_once('/').unwrap().0.to_string();
        for batch in read_parquet(&h.storage, &path).await {
            assert_eq!(batch.schema(), table.schema(), "{path}");
            out.push((dir.clone(), batch));
        }
    }
    out
}

fn ints(b: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    let c = b.column_by_name(name).unwrap();
    let c = c.as_any().downcast_ref::<Int64Array>().unwrap();
    (0..c.len())
        .map(|i| c.is_valid(i).then(|| c.value(i)))
        .collect()
}

fn texts(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let c = b.column_by_name(name).unwrap();
    let c = c.as_any().downcast_ref::<StringArray>().unwrap();
    (0..c.len())
        .map(|i| c.is_valid(i).then(|| c.value(i).to_string()))
        .collect()
}

fn bools(b: &RecordBatch, name: &str) -> Vec<Option<bool>> {
    let c = b.column_by_name(name).unwrap();
    let c = c.as_any().downcast_ref::<BooleanArray>().unwrap();
    (0..c.len())
        .map(|i| c.is_valid(i).then(|| c.value(i)))
        .collect()
}

fn times(b: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    let c = b.column_by_name(name).unwrap();
    let c = c
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .unwrap();
    (0..c.len())
        .map(|i| c.is_valid(i).then(|| c.value(i)))
        .collect()
}

fn lists(b: &RecordBatch, name: &str) -> Vec<Option<Vec<String>>> {
    let c = b.column_by_name(name).unwrap();
    let c = c.as_any().downcast_ref::<ListArray>().unwrap();
    (0..c.len())
        .map(|i| {
            c.is_valid(i).then(|| {
                let v = c.value(i);
                let s = v.as_any().downcast_ref::<StringArray>().unwrap();
                (0..s.len()).map(|j| s.value(j).to_string()).collect()
            })
        })
        .collect()
}

fn ms(t: DateTime<Utc>) -> Option<i64> {
    Some(t.timestamp_millis())
}

fn level(code: i64) -> String {
    ["Low", "Medium", "High"][(code - 1) as usize].to_string()
}

fn agent(gt: &GroundTruth, id: Option<i64>) -> (Option<String>, Option<String>) {
    match id.and_then(|id| gt.agents.iter().find(|a| a.id == id)) {
        Some(a) => (
            Some(format!("{} {}", a.first_name, a.last_name)),
            Some(a.email.clone()),
        ),
        None => (None, None),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_columns_carry_what_the_api_sent() {
    let h = Harness::new(200, 11).await;
    let outcome = h.full_sync().await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let gt = h.sim.ground_truth();
    // Groups are read once per run, like agents.
    let stats = h.sim.stats();
    assert_eq!(stats.endpoint("groups"), 1);
    // The live listing embeds tags: 1 + 2 × (stats, tags) = 5 credits a page (a full sync reads
    // the requester directory instead of embedding requesters).
    let live: Vec<_> = stats
        .log
        .iter()
        .filter(|r| r.endpoint == "tickets_list" && !r.path_and_query.contains("filter="))
        .collect();
    assert!(!live.is_empty());
    for r in live {
        assert!(
            r.path_and_query.contains("include=stats%2Ctags"),
            "{}",
            r.path_and_query
        );
        assert_eq!(r.credits, 5, "{}", r.path_and_query);
    }

    let mut tickets = 0;
    let (mut tagged, mut grouped, mut responded) = (0, 0, 0);
    for (_, b) in batches(&h, Table::Tickets).await {
        let ids = ints(&b, "ticket_id");
        for (i, id) in ids.iter().enumerate() {
            let t = gt.ticket(id.unwrap()).unwrap();
            tickets += 1;
            assert_eq!(ints(&b, "workspace_id")[i], Some(2), "ticket {}", t.id);
            assert_eq!(texts(&b, "category")[i], t.category);
            assert_eq!(texts(&b, "sub_category")[i], t.sub_category);
            assert_eq!(texts(&b, "item_category")[i], None, "the API sends null");
            // List rows omit urgency and impact (API reference §6): null, not a guess.
            assert_eq!(texts(&b, "urgency")[i], None);
            assert_eq!(texts(&b, "impact")[i], None);
            assert_eq!(lists(&b, "tags")[i].as_ref(), Some(&t.tags));
            tagged += usize::from(!t.tags.is_empty());
            // Exactly as sent: same keys, same order, same value types.
            assert_eq!(
                texts(&b, "custom_fields")[i],
                Some(serde_json::to_string(&t.custom_fields).unwrap())
            );
            assert_eq!(times(&b, "due_by")[i], ms(t.due_by));
            assert_eq!(times(&b, "fr_due_by")[i], ms(t.fr_due_by));
            assert_eq!(bools(&b, "is_escalated")[i], Some(t.is_escalated));
            assert_eq!(bools(&b, "fr_escalated")[i], Some(t.fr_escalated));
            assert_eq!(times(&b, "resolved_at")[i], t.resolved_at.and_then(ms));
            // Response times from the conversations, computed here independently.
            let out: Vec<_> = t
                .conversations
                .iter()
                .filter(|c| !c.incoming && !c.private)
                .collect();
            let first = out.first().map(|c| c.created_at);
            assert_eq!(times(&b, "first_responded_at")[i], first.and_then(ms));
            assert_eq!(
                times(&b, "agent_responded_at")[i],
                out.last().and_then(|c| ms(c.created_at))
            );
            assert_eq!(
                ints(&b, "first_resp_time_secs")[i],
                first.map(|f| (f - t.created_at).num_seconds())
            );
            assert_eq!(
                ints(&b, "resolution_time_secs")[i],
                t.resolved_at.map(|r| (r - t.created_at).num_seconds())
            );
            responded += usize::from(first.is_some());
            let (name, email) = agent(&gt, t.responder_id);
            assert_eq!(texts(&b, "responder_name")[i], name);
            assert_eq!(texts(&b, "responder_email")[i], email);
            let group = t
                .group_id
                .and_then(|g| gt.group_name(g))
                .map(str::to_string);
            grouped += usize::from(group.is_some());
            assert_eq!(texts(&b, "group_name")[i], group);
        }
    }
    assert!(tickets > 50, "{tickets}");
    assert!(tagged > 10 && tagged < tickets, "{tagged} of {tickets}");
    assert!(grouped > 10 && responded > 10, "{grouped} {responded}");

    // Conversations: attachment metadata only.
    let mut with_attachments = 0;
    let mut conversations = 0;
    for (_, b) in batches(&h, Table::Conversations).await {
        let tids = ints(&b, "ticket_id");
        let cids = ints(&b, "conversation_id");
        let attachments = texts(&b, "attachments");
        for i in 0..b.num_rows() {
            conversations += 1;
            let t = gt.ticket(tids[i].unwrap()).unwrap();
            let c = t
                .conversations
                .iter()
                .find(|c| c.id == cids[i].unwrap())
                .unwrap();
            let expected: Vec<Value> = c
                .attachments
                .iter()
                .map(|a| json!({"name": a.name, "size": a.size, "content_type": a.content_type}))
                .collect();
            let text = attachments[i]
                .as_deref()
                .expect("the API sends attachments");
            assert!(
                !text.contains("attachment_url") && !text.contains("http"),
                "{text}"
            );
            assert_eq!(
                serde_json::from_str::<Value>(text).unwrap(),
                json!(expected)
            );
            with_attachments += usize::from(!c.attachments.is_empty());
        }
    }
    assert!(
        with_attachments > 5 && with_attachments < conversations,
        "{with_attachments} of {conversations}"
    );

    // Time entries: workspace, task, custom fields as sent, agent name, start time.
    let (mut entries, mut tasks, mut empty_custom) = (0, 0, 0);
    for (_, b) in batches(&h, Table::TimeEntries).await {
        let tids = ints(&b, "ticket_id");
        let eids = ints(&b, "time_entry_id");
        for i in 0..b.num_rows() {
            entries += 1;
            let t = gt.ticket(tids[i].unwrap()).unwrap();
            let e = t
                .time_entries
                .iter()
                .find(|e| e.id == eids[i].unwrap())
                .unwrap();
            assert_eq!(ints(&b, "workspace_id")[i], Some(2));
            assert_eq!(ints(&b, "task_id")[i], e.task_id);
            tasks += usize::from(e.task_id.is_some());
            let custom = texts(&b, "custom_fields")[i].clone().unwrap();
            assert_eq!(custom, serde_json::to_string(&e.custom_fields).unwrap());
            empty_custom += usize::from(custom == "{}");
            assert_eq!(texts(&b, "agent_name")[i], agent(&gt, Some(e.agent_id)).0);
            assert_eq!(times(&b, "start_time")[i], ms(e.start_time));
        }
    }
    assert!(
        entries > 50 && tasks > 0 && tasks < entries,
        "{tasks} of {entries}"
    );
    assert!(empty_custom > 0 && empty_custom < entries);
    h.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_ticket_run_reads_urgency_and_impact_from_the_view() {
    let h = Harness::new(40, 5).await;
    let gt = h.sim.ground_truth();
    let spec = h.spec();
    let outcome = h.sync_with(spec.clone(), None).await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    // A placed ticket, re-read alone with GET /tickets/{id}: the view carries urgency and impact.
    let (_, b) = batches(&h, Table::Tickets).await.remove(0);
    let id = ints(&b, "ticket_id")[0].unwrap();
    let outcome = h.sync_with(spec, Some(id)).await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let t = gt.ticket(id).unwrap();
    let mut found = false;
    for (_, b) in batches(&h, Table::Tickets).await {
        for (i, tid) in ints(&b, "ticket_id").into_iter().enumerate() {
            if tid == Some(id) {
                found = true;
                assert_eq!(texts(&b, "urgency")[i], Some(level(t.urgency)));
                assert_eq!(texts(&b, "impact")[i], Some(level(t.impact)));
                assert_eq!(lists(&b, "tags")[i].as_ref(), Some(&t.tags));
            }
        }
    }
    assert!(found);
    h.sim.shutdown().await;
}

/// Rewrites every partition file as the previous release wrote it: without the added columns.
async fn downgrade(h: &Harness) {
    for table in Table::ALL {
        let names = added_columns(table);
        for path in crate::support::data_files(&h.storage, table).await {
            let batches = read_parquet(&h.storage, &path).await;
            let schema = Arc::new(Schema::new(
                table
                    .schema()
                    .fields()
                    .iter()
                    .filter(|f| !names.contains(&f.name().as_str()))
                    .cloned()
                    .collect::<Vec<_>>(),
            ));
            let old: Vec<RecordBatch> = batches
                .iter()
                .map(|b| {
                    let cols = schema
                        .fields()
                        .iter()
                        .map(|f| b.column_by_name(f.name()).unwrap().clone())
                        .collect();
                    RecordBatch::try_new(schema.clone(), cols).unwrap()
                })
                .collect();
            let mut buf = Vec::new();
            let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema, None).unwrap();
            for b in &old {
                w.write(b).unwrap();
            }
            w.close().unwrap();
            h.storage.put(&path, buf.into()).await.unwrap();
        }
    }
}

/// Rows without the added columns (what an old file and a rewritten one must agree on).
fn old_rows(table: Table, b: &RecordBatch) -> Vec<String> {
    let names = added_columns(table);
    let keep: Vec<usize> = (0..b.num_columns())
        .filter(|&i| !names.contains(&b.schema().field(i).name().as_str()))
        .collect();
    canonical_rows(&b.project(&keep).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dataset_written_before_the_new_columns_keeps_syncing() {
    let h = Harness::new(120, 3).await;
    assert!(h.full_sync().await.error.is_none());
    downgrade(&h).await;

    // Pick a file with several tickets and touch one of them.
    let mut by_file: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for path in crate::support::data_files(&h.storage, ticketsync::tables::Table::Tickets).await {
        for b in read_parquet(&h.storage, &path).await {
            assert_eq!(b.num_columns(), Table::Tickets.schema().fields().len() - 20);
            by_file
                .entry(path.to_string())
                .or_default()
                .extend(ints(&b, "ticket_id").into_iter().flatten());
        }
    }
    let (path, ids) = by_file.iter().max_by_key(|(_, ids)| ids.len()).unwrap();
    assert!(ids.len() >= 3, "{path}: {ids:?}");
    let dir = path.rsplit_once('/').unwrap().0.to_string();
    let touched = ids[0];
    // The file of the partition that holds `id`.
    let storage = h.storage.clone();
    let file_holding = |table: Table, dir: String, id: i64| {
        let storage = storage.clone();
        async move {
            for p in crate::support::data_files(&storage, table).await {
                if p.as_ref().rsplit_once('/').unwrap().0 != dir {
                    continue;
                }
                let batches = read_parquet(&storage, &p).await;
                if batches
                    .iter()
                    .any(|b| ints(b, "ticket_id").contains(&Some(id)))
                {
                    return Some(p);
                }
            }
            None
        }
    };
    let before: Vec<String> =
        read_parquet(&h.storage, &object_store::path::Path::from(path.as_str()))
            .await
            .iter()
            .flat_map(canonical_rows)
            .filter(|r| !r.starts_with(&format!("ticket_id={touched} ")))
            .collect();

    h.sim.touch_ticket(touched);
    let outcome = h.incremental().await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.report.tickets.written, 1);

    // The rewritten file has today's schema: the untouched (old) rows are kept with the added
    // columns null, the touched ticket has its values.
    // (The dataset says format 2, so no upgrade runs: this is decoding an old file during a
    // partition rewrite on its own, as after an older release wrote to an upgraded dataset.
    // Files the run did not touch keep their layout.)
    let path = file_holding(Table::Tickets, dir.clone(), touched)
        .await
        .unwrap();
    let after = read_parquet(&h.storage, &path).await;
    let mut kept = Vec::new();
    let mut seen = BTreeSet::new();
    for b in &after {
        assert_eq!(b.schema(), Table::Tickets.schema(), "{path}");
        let rows = old_rows(Table::Tickets, b);
        for (i, id) in ints(b, "ticket_id").into_iter().enumerate() {
            let id = id.unwrap();
            seen.insert(id);
            if id == touched {
                assert_eq!(ints(b, "workspace_id")[i], Some(2));
                assert!(texts(b, "custom_fields")[i].is_some());
            } else {
                for name in added_columns(Table::Tickets) {
                    assert!(b.column_by_name(name).unwrap().is_null(i), "{id} {name}");
                }
                kept.push(rows[i].clone());
            }
        }
    }
    assert_eq!(kept, before, "the old rows are kept as they were");
    assert_eq!(seen.len(), ids.len());
    // The touched ticket's children were rewritten in the same partition of the other tables:
    // every file there that holds them reads with today's schema (files that hold none of
    // them are left as they were).
    let account_year = dir.strip_prefix("tickets/").unwrap();
    for table in [Table::Conversations, Table::TimeEntries] {
        let dir = format!("{}/{account_year}", table.name());
        for p in crate::support::data_files(&h.storage, table).await {
            if p.as_ref().rsplit_once('/').unwrap().0 != dir {
                continue;
            }
            for b in read_parquet(&h.storage, &p).await {
                if ints(&b, "ticket_id").contains(&Some(touched)) {
                    assert_eq!(b.schema(), table.schema(), "{p}");
                }
            }
        }
    }
    h.sim.shutdown().await;
}

/// Every account has groups: a key that may not read them (403), or a proxy that lost the path
/// (404), fails the run (exit 3 for the permission, 2 otherwise) instead of writing every ticket
/// with `group_name` null; a refused key (401) is a credentials error like on any reference list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_that_cannot_be_read_fail_the_run() {
    use ticketsync::sim::{FaultAction, FaultRule};

    for status in [403, 404] {
        let h = Harness::new(40, 9).await;
        h.sim
            .faults()
            .push(FaultRule::new(FaultAction::Status(status)).endpoint("groups"));
        let outcome = h.try_sync_with(h.full_spec(), None).await;
        let error = match outcome {
            Err(e) => e.to_string(),
            Ok(outcome) => outcome.error.map(|e| e.to_string()).unwrap_or_default(),
        };
        assert!(error.contains("groups"), "{status}: {error:?}");
        assert!(
            h.dump().await.table("tickets").is_empty(),
            "{status}: nothing written"
        );
        h.sim.shutdown().await;
    }

    let h = Harness::new(10, 9).await;
    h.sim
        .faults()
        .push(FaultRule::new(FaultAction::Status(401)).endpoint("groups"));
    let err = h.try_sync_with(h.full_spec(), None).await;
    let failed = match err {
        Err(e) => e.class() == ticketsync::error::Class::Config,
        Ok(outcome) => outcome
            .error
            .is_some_and(|e| e.class() == ticketsync::error::Class::Config),
    };
    assert!(failed, "a 401 on /groups is a credentials error");
    h.sim.shutdown().await;
}
