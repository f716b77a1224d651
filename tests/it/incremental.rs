//! Incremental runs, single-ticket runs, reopened and deleted tickets, moved tickets.

use std::collections::HashMap;
use std::io::Write;

use object_store::path::Path;
use ticketsync::job::JobSpec;
use ticketsync::sim::{FaultAction, FaultRule};
use ticketsync::storage::layout;

use crate::support::{Dump, Harness};

fn ticket_rows(dump: &Dump, id: i64) -> Vec<&String> {
    let needle = format!("ticket_id={id} ");
    dump.table("tickets")
        .iter()
        .filter(|l| l.contains(&needle))
        .collect()
}

/// A closed ticket that the first full sync placed.
async fn a_placed_ticket(h: &Harness) -> (i64, String) {
    let docs = h.storage.list(&Path::from("markdown")).await.unwrap();
    let path = docs.first().expect("some markdown");
    let id = path
        .filename()
        .unwrap()
        .trim_end_matches(".md")
        .parse()
        .unwrap();
    (id, path.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_changed_makes_no_per_ticket_calls() {
    let h = Harness::new(150, 3).await;
    let first = h.full_sync().await;
    assert!(first.report.next_cursor.is_some());
    let before = h.sim.stats();
    let dump_before = h.dump().await;

    let second = h.incremental().await;
    let after = h.sim.stats();
    assert_eq!(
        after.endpoint("conversations"),
        before.endpoint("conversations")
    );
    assert_eq!(
        after.endpoint("time_entries"),
        before.endpoint("time_entries")
    );
    assert_eq!(second.report.tickets.fetched, 0);
    assert_eq!(h.dump().await, dump_before);
    // The second run listed from the stored cursor, not the full window.
    assert_eq!(second.report.window_since, first.report.next_cursor);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_and_a_new_ticket_are_the_only_ones_refetched() {
    let h = Harness::new(150, 4).await;
    h.full_sync().await;
    let (changed, _) = a_placed_ticket(&h).await;
    h.sim.touch_ticket(changed);
    let added = h.sim.add_closed_ticket();
    let before = h.sim.stats();

    let run = h.incremental().await;
    let after = h.sim.stats();
    assert_eq!(
        after.endpoint("conversations") - before.endpoint("conversations"),
        2
    );
    assert_eq!(
        after.endpoint("time_entries") - before.endpoint("time_entries"),
        2
    );
    assert_eq!(run.report.tickets.fetched, 2);
    assert_eq!(run.report.tickets.written, 2);

    let dump = h.dump().await;
    let gt = h.sim.ground_truth();
    for id in [changed, added] {
        let rows = ticket_rows(&dump, id);
        assert_eq!(rows.len(), 1, "ticket {id}: {rows:?}");
        let subject = &gt.ticket(id).unwrap().subject;
        assert!(
            rows[0].contains(&format!("subject={subject} ")),
            "ticket {id} not current: {}",
            rows[0]
        );
    }
    // No ticket appears twice anywhere.
    let mut ids: Vec<&str> = dump
        .table("tickets")
        .iter()
        .map(|l| l.split(' ').nth(2).unwrap())
        .collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_ticket_run_writes_that_ticket_and_keeps_the_cursor() {
    let h = Harness::new(120, 5).await;
    let gt = h.sim.ground_truth();
    // The oldest placed-able closed ticket, possibly outside the one-year window.
    let id = gt.closed_tickets().map(|t| t.id).next().unwrap();
    let run = h.sync_with(h.spec(), Some(id)).await;
    assert!(run.error.is_none(), "{:?}", run.error);
    let dump = h.dump().await;
    let in_tickets = ticket_rows(&dump, id).len();
    let in_rejects = dump
        .table("rejects")
        .iter()
        .filter(|l| l.contains(&format!("ticket_id={id} ")))
        .count();
    assert_eq!(in_tickets + in_rejects, 1);
    assert_eq!(dump.table("tickets").len(), in_tickets);
    assert!(run.report.next_cursor.is_none());
    assert!(!h
        .storage
        .exists(&layout::state("cursor.json"))
        .await
        .unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_ticket_leaves_the_closed_dataset() {
    let h = Harness::new(150, 6).await;
    h.full_sync().await;
    let (id, md_path) = a_placed_ticket(&h).await;
    h.sim.reopen_ticket(id);
    let run = h.incremental().await;
    assert_eq!(run.report.tickets.removed, 1);
    let dump = h.dump().await;
    assert!(ticket_rows(&dump, id).is_empty());
    for table in ["conversations", "notes", "time_entries", "rejects"] {
        assert!(
            !dump
                .table(table)
                .iter()
                .any(|l| l.contains(&format!("ticket_id={id} "))),
            "{table}"
        );
    }
    assert!(!dump.markdown.contains_key(&md_path));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_ticket_whose_detail_calls_answer_404_keeps_its_rows_until_the_deleted_view_says_so(
) {
    let h = Harness::new(120, 8).await;
    let gt = h.sim.ground_truth();
    let first = h.full_sync().await;
    let victim = gt
        .closed_tickets()
        .filter(|t| t.updated_at >= first.report.window_since.unwrap())
        .map(|t| t.id)
        .next()
        .unwrap();
    // Make it look changed, then have its conversations answer 404 while the ticket itself
    // still answers: a proxy that lost a path is no evidence of deletion.
    h.sim.touch_ticket(victim);
    h.sim.faults().push(
        FaultRule::new(FaultAction::Status(404))
            .endpoint("conversations")
            .ticket(victim)
            .times(10),
    );
    let run = h.incremental().await;
    assert_eq!(run.report.tickets.failed, 1, "{:?}", run.report.tickets);
    assert_eq!(ticket_rows(&h.dump().await, victim).len(), 1, "rows kept");
    // Now the ticket answers 404 as well: a proxy that lost `/tickets/{id}…` answers so, and
    // the listing just showed the ticket, so it is no evidence of deletion either.
    h.sim.faults().clear();
    for endpoint in ["conversations", "ticket_view"] {
        h.sim.faults().push(
            FaultRule::new(FaultAction::Status(404))
                .endpoint(endpoint)
                .ticket(victim)
                .times(10),
        );
    }
    let run = h.incremental().await;
    assert_eq!(run.report.tickets.failed, 1, "{:?}", run.report.tickets);
    assert!(run.report.next_cursor.is_none(), "the cursor stays");
    assert_eq!(ticket_rows(&h.dump().await, victim).len(), 1, "rows kept");
    // `sync --ticket N` on a stored ticket that answers 404: the same (before, a
    // `ticket_deleted` reject took it out of the tables past the removal guard).
    h.sim.faults().clear();
    h.sim.faults().push(
        FaultRule::new(FaultAction::Status(404))
            .endpoint("ticket_view")
            .ticket(victim)
            .times(10),
    );
    let one = h.try_sync_with(h.spec(), Some(victim)).await;
    let error = match one {
        Err(e) => e.to_string(),
        Ok(o) => o
            .error
            .expect("a 404 fails a single-ticket run")
            .to_string(),
    };
    assert!(error.contains("keeps its rows"), "{error}");
    let dump = h.dump().await;
    assert_eq!(ticket_rows(&dump, victim).len(), 1, "rows kept");
    assert!(!dump
        .table("rejects")
        .iter()
        .any(|l| l.contains(&format!("ticket_id={victim} "))));
    // Really deleted: the deleted view says so, and the next run removes it.
    h.sim.faults().clear();
    h.sim.delete_ticket(victim);
    let run = h.incremental().await;
    assert!(run.error.is_none(), "{:?}", run.error);
    let dump = h.dump().await;
    assert!(ticket_rows(&dump, victim).is_empty());
    assert_eq!(run.report.removed.get("deleted"), Some(&vec![victim]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_that_changes_account_moves_with_all_its_rows() {
    let h = Harness::new(150, 9).await;
    h.full_sync().await;
    let (id, old_md) = a_placed_ticket(&h).await;
    let gt = h.sim.ground_truth();
    let dept = gt.ticket(id).unwrap().department_id.unwrap();
    // The MSP fixes the account number of that department through the account map.
    let mut csv = tempfile::NamedTempFile::new().unwrap();
    writeln!(csv, "department_id,account_number\n{dept},MOVED-1").unwrap();
    h.sim.touch_ticket(id);
    let spec = JobSpec {
        account_map: Some(csv.path().to_path_buf()),
        ..h.spec()
    };
    h.sync_with(spec, None).await;
    let dump = h.dump().await;
    let rows = ticket_rows(&dump, id);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0].starts_with("tickets/domain=acme/account=MOVED-1/"),
        "{}",
        rows[0]
    );
    let mut per_table: HashMap<&str, Vec<&String>> = HashMap::new();
    for table in ["conversations", "notes", "time_entries"] {
        let lines: Vec<&String> = dump
            .table(table)
            .iter()
            .filter(|l| l.contains(&format!("ticket_id={id} ")))
            .collect();
        assert!(
            lines
                .iter()
                .all(|l| l.starts_with(&format!("{table}/domain=acme/account=MOVED-1/"))),
            "{table}: {lines:?}"
        );
        per_table.insert(table, lines);
    }
    assert!(!dump.markdown.contains_key(&old_md));
    assert!(dump
        .markdown
        .keys()
        .any(|k| k.starts_with("markdown/MOVED-1/") && k.ends_with(&format!("/{id}.md"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_and_spam_tickets_are_reconciled_away() {
    let h = Harness::new(150, 12).await;
    h.full_sync().await;
    let docs = h.storage.list(&Path::from("markdown")).await.unwrap();
    let id_of = |p: &Path| -> i64 {
        p.filename()
            .unwrap()
            .trim_end_matches(".md")
            .parse()
            .unwrap()
    };
    let (deleted, spam) = (id_of(&docs[0]), id_of(&docs[1]));
    h.sim.delete_ticket(deleted);
    h.sim.spam_ticket(spam);
    let run = h.incremental().await;
    assert!(run.error.is_none(), "{:?}", run.error);
    assert_eq!(run.report.removed.get("deleted"), Some(&vec![deleted]));
    assert_eq!(run.report.removed.get("spam"), Some(&vec![spam]));
    let dump = h.dump().await;
    for id in [deleted, spam] {
        for (table, rows) in &dump.rows {
            assert!(
                !rows.iter().any(|l| l.contains(&format!("ticket_id={id} "))),
                "{id} still in {table}"
            );
        }
        assert!(!dump
            .markdown
            .keys()
            .any(|k| k.ends_with(&format!("/{id}.md"))));
    }
    // The next run does not remove them again.
    let again = h.incremental().await;
    assert!(
        again.report.removed.is_empty(),
        "{:?}",
        again.report.removed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_logged_after_close_is_caught_by_the_rescan() {
    let h = Harness::new(200, 13).await;
    h.full_sync().await;
    let gt = h.sim.ground_truth();
    // A ticket closed within the re-scan window (the last 30 days here), already in the dataset.
    let since = chrono::Utc::now() - chrono::Duration::days(30);
    let dump = h.dump().await;
    let id = gt
        .closed_tickets()
        .filter(|t| t.closed_at.is_some_and(|c| c >= since))
        .map(|t| t.id)
        .find(|id| ticket_rows(&dump, *id).len() == 1)
        .expect("a recently closed, placed ticket");
    let before = ticket_rows(&dump, id)[0].clone();
    // Time logged without the ticket's updated_at moving: the listing cannot see it.
    h.sim.add_time_entry(id, 45, true, false);
    let spec = JobSpec {
        rescan_days: Some(30),
        rescan_every_hours: Some(0.0),
        ..h.spec()
    };
    let run = h.sync_with(spec, None).await;
    assert!(run.error.is_none(), "{:?}", run.error);
    assert!(run.report.tickets.rescanned >= 1);
    assert_eq!(
        run.report.tickets.rescan_changed, 1,
        "{:?}",
        run.report.tickets
    );
    let after = ticket_rows(&h.dump().await, id)[0].clone();
    let minutes = |row: &str| -> i64 {
        row.split(' ')
            .find_map(|kv| kv.strip_prefix("total_minutes="))
            .unwrap()
            .parse()
            .unwrap()
    };
    let t = h.sim.ground_truth().ticket(id).unwrap().clone();
    let expected =
        crate::support::total_minutes_of(t.time_entries.iter().map(|e| e.time_spent.as_str()));
    assert_eq!(minutes(&after), expected, "{before}\n{after}");
    assert_ne!(minutes(&before), minutes(&after));
}

/// A cursor older than the retention cutoff (the job failed for longer than its retention, or
/// `retention_days` was lowered): the run lists from the cutoff, and that window covers the
/// cursor, so it moves. Before, it stayed where it was and every later run listed the whole
/// retention window again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_older_than_the_retention_cutoff_moves() {
    let h = Harness::new(60, 8).await;
    let days = 90;
    let spec = || JobSpec {
        retention_days: Some(days),
        ..h.spec()
    };
    let first = h.sync_with(spec(), None).await;
    assert!(first.error.is_none(), "{:?}", first.error);
    let old = chrono::Utc::now() - chrono::Duration::days(i64::from(days) + 30);
    ticketsync::state::store_cursor(
        &h.storage,
        &ticketsync::state::Cursor {
            updated_since: old,
            run_id: "long-ago".into(),
            rescanned_at: Some(old),
            api: None,
        },
    )
    .await
    .unwrap();

    let second = h.sync_with(spec(), None).await;
    assert!(second.error.is_none(), "{:?}", second.error);
    let since = second.report.window_since.unwrap();
    assert!(
        since > old,
        "the window starts at the cutoff, not at the cursor"
    );
    let moved = second.report.next_cursor.expect("the cursor moves");
    let stored = ticketsync::state::load_cursor(&h.storage)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.updated_since, moved);
    assert!(moved > since);
    // The next run lists from there, not from the cutoff again.
    let third = h.sync_with(spec(), None).await;
    assert_eq!(third.report.window_since, Some(moved));
}
