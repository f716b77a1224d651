//! Property test of the upsert merge: any sequence of changesets leaves exactly one current
//! version of each ticket (the latest), in exactly one place, with its children beside it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arrow::array::{Array, StringArray};
use object_store::memory::InMemory;
use object_store::path::Path;
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::normalize::{self, AccountMap, Outcome, Person, RejectReason, Rejection, Settings};
use crate::source::wire;

const ACCOUNTS: [&str; 3] = ["100", "200", "300"];

#[derive(Debug, Clone)]
enum Op {
    Place {
        account: usize,
        year: i32,
        conversations: usize,
    },
    Reject,
    Remove,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, 2024..2026i32, 0..3usize).prop_map(|(account, year, conversations)| Op::Place { account, year, conversations }),
        1 => Just(Op::Reject),
        1 => Just(Op::Remove),
    ]
}

fn placed(id: i64, version: i64, account: usize, year: i32, conversations: usize) -> Placed {
    placed_saying(id, version, account, year, conversations, "")
}

/// [`placed`], each conversation's body followed by `text`.
fn placed_saying(
    id: i64,
    version: i64,
    account: usize,
    year: i32,
    conversations: usize,
    text: &str,
) -> Placed {
    let closed = format!("{year}-06-01T00:00:00Z");
    let ticket: wire::Ticket = serde_json::from_value(json!({
        "id": id, "subject": format!("v{version}"), "status": 5, "priority": 2,
        "department_id": account as i64 + 1, "updated_at": closed, "stats": {"closed_at": closed}
    }))
    .unwrap();
    let convs: Vec<Result<wire::Conversation, wire::ItemError>> = (0..conversations)
        .map(|i| {
            Ok(serde_json::from_value(json!({
                "id": id * 100 + i as i64, "body": format!("<p>m{i} of v{version}{text}</p>"), "private": false,
                "created_at": closed
            }))
            .unwrap())
        })
        .collect();
    let departments: Vec<wire::Department> = (0..3)
        .map(|i| {
            serde_json::from_value(
                json!({"id": i + 1, "custom_fields": {"account_number": ACCOUNTS[i as usize]}}),
            )
            .unwrap()
        })
        .collect();
    let accounts = AccountMap::new(&departments, "account_number", &HashMap::new());
    let agents: HashMap<i64, Person> = HashMap::new();
    let settings = Settings {
        default_minutes: 15,
        synced_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        privacy: crate::normalize::Privacy::none(),
    };
    let ctx = normalize::Context {
        accounts: &accounts,
        agents: &agents,
        requesters: &agents,
        groups: &HashMap::new(),
        settings: &settings,
    };
    match normalize::normalize_ticket(&ticket, &convs, &[], &ctx) {
        Outcome::Placed(p) => *p,
        Outcome::Rejected(r) => panic!("{r:?}"),
    }
}

async fn rows(storage: &Storage, table: &str) -> Vec<(String, i64, String)> {
    let mut out = Vec::new();
    let lake = crate::state::delta::Lake::open(storage, crate::state::delta::At::Committed)
        .await
        .unwrap();
    let t = *Table::ALL.iter().find(|t| t.name() == table).unwrap();
    for path in lake.all_files(t).map(|f| f.object(t)) {
        let dir = path.as_ref().rsplit_once('/').unwrap().0.to_string();
        let bytes = storage.get(&path).await.unwrap().unwrap();
        let schema = Table::ALL
            .iter()
            .find(|t| t.name() == table)
            .unwrap()
            .schema();
        for batch in parquet::decode(bytes, &schema, path.as_ref()).unwrap() {
            let ids = parquet::ticket_ids(&batch);
            let label_col = match table {
                "tickets" => "subject",
                "conversations" => "body",
                _ => "reason",
            };
            let labels = batch
                .column_by_name(label_col)
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            for i in 0..ids.len() {
                out.push((dir.clone(), ids.value(i), labels.value(i).to_string()));
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn any_sequence_of_changesets_leaves_the_latest_version_once(
        batches in proptest::collection::vec((proptest::collection::vec((1..7i64, op()), 1..6), 0..3u8), 1..6),
        end_by_recovery in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let storage = Storage::from_store(Arc::new(InMemory::new()), "memory");
            let mut index = Index::default();
            let mut model: BTreeMap<i64, (i64, Op)> = BTreeMap::new();
            let mut version = 0;
            // Each changeset is committed at once (0), written as a checkpoint (1), or written
            // as a checkpoint and committed with those before it (2); checkpoints still pending
            // at the end are committed by the run's end or by a recovery (a killed run).
            let mut pending = Vec::new();
            let mut lake = crate::state::delta::Lake::open(&storage, crate::state::delta::At::Latest).await.unwrap();
            for (n, (batch, mode)) in batches.iter().enumerate() {
                // One entry per ticket per changeset (the pipeline guarantees it): the last wins.
                let mut latest: BTreeMap<i64, (i64, Op)> = BTreeMap::new();
                for (id, op) in batch {
                    version += 1;
                    latest.insert(*id, (version, op.clone()));
                }
                let mut changeset = Changeset::default();
                for (id, (v, op)) in &latest {
                    match op {
                        Op::Place { account, year, conversations } => changeset.placed.push(placed(*id, *v, *account, *year, *conversations)),
                        Op::Reject => changeset.rejected.push(Rejection {
                            ticket_id: *id,
                            reason: RejectReason::NoAccountNumber,
                            department_id: None,
                            detail: format!("v{v}"),
                            updated_at: None,
                            seen_at: "2026-01-01T00:00:00Z".parse().unwrap(),
                        }),
                        Op::Remove => changeset.removed.push((*id, Removal::Reopened)),
                    }
                    model.insert(*id, (*v, op.clone()));
                }
                let tag = format!("t{n}");
                match mode {
                    0 => {
                        commit_pending(&storage, &mut lake, &mut index, std::mem::take(&mut pending), changeset, false, &tag).await.unwrap();
                    }
                    _ => {
                        pending.push(checkpoint(&storage, &lake, &mut index, &changeset, &tag).await.unwrap());
                        if *mode == 2 {
                            commit_pending(&storage, &mut lake, &mut index, std::mem::take(&mut pending), Changeset::default(), false, &format!("{tag}-c")).await.unwrap();
                        }
                    }
                }
            }
            if !pending.is_empty() {
                if end_by_recovery {
                    assert!(recover(&storage, false).await.unwrap());
                    index = crate::state::load_index(&storage).await.unwrap();
                } else {
                    commit_pending(&storage, &mut lake, &mut index, pending, Changeset::default(), false, "end").await.unwrap();
                }
            }
            assert!(storage.list(&Path::from("_pending")).await.unwrap().is_empty());

            let tickets = rows(&storage, "tickets").await;
            let conversations = rows(&storage, "conversations").await;
            let rejects = rows(&storage, "rejects").await;
            for (id, (v, op)) in &model {
                let t: Vec<_> = tickets.iter().filter(|r| r.1 == *id).collect();
                let c: Vec<_> = conversations.iter().filter(|r| r.1 == *id).collect();
                let r: Vec<_> = rejects.iter().filter(|r| r.1 == *id).collect();
                match op {
                    Op::Place { account, year, conversations: n } => {
                        let dir = format!("tickets/domain=default/account={}/year={year}", ACCOUNTS[*account]);
                        assert_eq!(t.len(), 1, "ticket {id}: {t:?}");
                        assert_eq!((t[0].0.as_str(), t[0].2.as_str()), (dir.as_str(), format!("v{v}").as_str()));
                        assert_eq!(c.len(), *n, "ticket {id} conversations: {c:?}");
                        let cdir = format!("conversations/domain=default/account={}/year={year}", ACCOUNTS[*account]);
                        assert!(c.iter().all(|r| r.0 == cdir && r.2.ends_with(&format!("of v{v}"))), "{c:?}");
                        assert!(r.is_empty(), "ticket {id} also rejected");
                        let md = crate::storage::layout::Scope::Home.markdown_file(ACCOUNTS[*account], *year, *id);
                        assert!(storage.exists(&md).await.unwrap(), "{md}");
                    }
                    Op::Reject => {
                        assert!(t.is_empty() && c.is_empty(), "ticket {id} rejected but placed");
                        assert_eq!(r.len(), 1);
                        assert_eq!(r[0].2, "no_account_number");
                    }
                    Op::Remove => assert!(t.is_empty() && c.is_empty() && r.is_empty(), "ticket {id} not removed"),
                }
            }
            // Exactly one markdown document per placed ticket, nothing staged left over.
            let docs = storage.list(&Path::from("markdown")).await.unwrap().len();
            let placed = model.values().filter(|(_, op)| matches!(op, Op::Place { .. })).count();
            assert_eq!(docs, placed);
            assert!(storage.list(&Path::from("_staging")).await.unwrap().is_empty());
            // Every data file is in its table's log, and only the latest commit's are there.
            let lake = crate::state::delta::Lake::open(&storage, crate::state::delta::At::Committed).await.unwrap();
            for table in Table::ALL {
                let mut active: Vec<Path> = lake.all_files(table).map(|f| f.object(table)).collect();
                active.sort();
                let mut stored: Vec<Path> = storage.list(&Path::from(table.name())).await.unwrap()
                    .into_iter().filter(|p| !p.as_ref().contains("/_delta_log/")).collect();
                stored.sort();
                assert_eq!(stored, active, "{}", table.name());
            }
            assert!(!storage.exists(&crate::storage::layout::state(crate::state::JOURNAL)).await.unwrap());
            let index_back = crate::state::load_index(&storage).await.unwrap();
            assert_eq!(index_back, index);
        });
    }
}

/// Tickets of one partition, committed in `commits` commits of `per` new tickets each.
async fn appended(storage: &Storage, index: &mut Index, commits: i64, per: i64) {
    for c in 0..commits {
        let changeset = Changeset {
            placed: (0..per)
                .map(|i| placed(1 + c * per + i, 1, 0, 2025, 1))
                .collect(),
            ..Changeset::default()
        };
        commit(storage, index, changeset, &format!("a{c}"))
            .await
            .unwrap();
    }
}

/// `words` pseudo-random hex words of 8 digits, each followed by `gap`: text that does not
/// compress away, from `seed` (advanced).
pub(super) fn noise(seed: &mut u64, words: usize, gap: &str) -> String {
    (0..words)
        .map(|_| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            format!("{:08x}{gap}", *seed >> 32)
        })
        .collect()
}

fn partition() -> Partition {
    Partition::placed("default", ACCOUNTS[0], 2025)
}

#[tokio::test]
async fn new_tickets_are_appended_and_a_change_rewrites_only_the_file_holding_it() {
    let storage = Storage::from_store(Arc::new(InMemory::new()), "memory");
    let mut index = Index::default();
    appended(&storage, &mut index, 3, 4).await;
    let lake = Lake::open(&storage, At::Latest).await.unwrap();
    let before: Vec<String> = lake
        .files(Table::Tickets, &partition())
        .iter()
        .map(|f| f.path.clone())
        .collect();
    assert_eq!(before.len(), 3, "one file per commit: {before:?}");
    // Ticket 6 is in the second file: only that one is replaced.
    let changeset = Changeset {
        placed: vec![placed(6, 2, 0, 2025, 2)],
        ..Changeset::default()
    };
    let stats = commit(&storage, &mut index, changeset, "change")
        .await
        .unwrap();
    let lake = Lake::open(&storage, At::Latest).await.unwrap();
    let after: Vec<String> = lake
        .files(Table::Tickets, &partition())
        .iter()
        .map(|f| f.path.clone())
        .collect();
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(after.contains(&before[0]) && after.contains(&before[2]));
    assert!(!after.contains(&before[1]));
    // tickets and conversations (ticket 6 has no notes or time entries).
    assert_eq!(stats.parquet_files_written, 2, "{stats:?}");
    let tickets = rows(&storage, "tickets").await;
    assert_eq!(tickets.len(), 12);
    assert_eq!(
        tickets
            .iter()
            .filter(|r| r.1 == 6)
            .map(|r| r.2.as_str())
            .collect::<Vec<_>>(),
        vec!["v2"]
    );
}

#[tokio::test]
async fn small_files_of_a_partition_are_compacted_without_changing_data() {
    let storage = Storage::from_store(Arc::new(InMemory::new()), "memory");
    let mut index = Index::default();
    appended(&storage, &mut index, FAN_IN as i64 - 1, 2).await;
    let lake = Lake::open(&storage, At::Latest).await.unwrap();
    assert_eq!(lake.files(Table::Tickets, &partition()).len(), FAN_IN - 1);
    let version = lake.version(Table::Tickets).unwrap();
    // The commit that makes it FAN_IN files of the smallest tier merges them.
    let changeset = Changeset {
        placed: vec![placed(1000, 1, 0, 2025, 1)],
        ..Changeset::default()
    };
    commit(&storage, &mut index, changeset, "last")
        .await
        .unwrap();
    let lake = Lake::open(&storage, At::Latest).await.unwrap();
    assert_eq!(lake.files(Table::Tickets, &partition()).len(), 1);
    assert_eq!(lake.version(Table::Tickets), Some(version + 2));
    assert_eq!(rows(&storage, "tickets").await.len(), (FAN_IN - 1) * 2 + 1);
    // The compaction's actions say they change no data.
    let log = storage
        .get(&Path::from(format!(
            "tickets/_delta_log/{:020}.json",
            version + 2
        )))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(log.to_vec()).unwrap();
    assert!(text.contains("\"dataChange\":false"), "{text}");
    assert!(!text.contains("\"dataChange\":true"), "{text}");
}

#[test]
fn tiers_grow_by_the_fan_in() {
    assert_eq!(tier(0), 0);
    assert_eq!(tier(TIER_BASE - 1), 0);
    assert_eq!(tier(TIER_BASE), 1);
    assert_eq!(tier(TIER_BASE * FAN_IN as u64), 2);
    let file = |size| DataFile {
        path: format!("p{size}"),
        partition: partition(),
        size,
        rows: None,
        stats: None,
    };
    let mut files: Vec<DataFile> = (0..FAN_IN as u64 - 1).map(|i| file(100 + i)).collect();
    files.push(file(TIER_BASE * 2));
    assert!(compaction_pick(&files).is_none());
    files.push(file(200));
    assert_eq!(compaction_pick(&files).unwrap().len(), FAN_IN);
}

#[tokio::test]
async fn a_checkpoints_rows_of_one_partition_do_not_keep_the_whole_file_in_memory() {
    let storage = Storage::from_store(Arc::new(InMemory::new()), "memory");
    // 3 accounts × 2 years, 20 tickets each, in one checkpoint.
    let placed_rows: Vec<Placed> = (0..120)
        .map(|i| placed(i + 1, 1, (i % 3) as usize, 2024 + (i % 2) as i32, 3))
        .collect();
    let changeset = Changeset {
        placed: placed_rows,
        ..Changeset::default()
    };
    let segment = pending::write(
        &storage,
        "default",
        &Index::default(),
        &changeset,
        "t-00001",
    )
    .await
    .unwrap();
    let file = &segment.files[Table::Conversations.name()];
    let one: BTreeSet<Partition> = [Partition::placed("default", ACCOUNTS[1], 2025)].into();
    let all: BTreeSet<Partition> = file.slices.iter().map(|s| s.partition.clone()).collect();
    let got = pending::read(&storage, Table::Conversations, file, &one)
        .await
        .unwrap();
    let every = pending::read(&storage, Table::Conversations, file, &all)
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, Partition::placed("default", ACCOUNTS[1], 2025));
    assert_eq!(got[0].1.num_rows(), 60);
    // Its rows are the same as in a read of every partition, and what it holds is its own: a
    // sixth of the file's rows, well under the whole file's buffers (`memory`, as written).
    let same = every.iter().find(|(p, _)| *p == got[0].0).unwrap();
    assert_eq!(same.1, got[0].1);
    let held = got[0].1.get_array_memory_size() as u64;
    assert!(held * 3 < file.memory, "{held} of {}", file.memory);
}

#[tokio::test]
async fn a_large_partition_is_several_files_and_a_change_rewrites_only_the_one_holding_it() {
    let storage = Storage::from_store(Arc::new(InMemory::new()), "memory");
    let mut index = Index::default();
    let mut seed = 11u64;
    // About 3.6 MB of conversation text that does not compress away: several times FILE_BYTES.
    let changeset = Changeset {
        placed: (1..=600)
            .map(|id| {
                placed_saying(
                    id,
                    1,
                    0,
                    2025,
                    2,
                    &format!(" {}", noise(&mut seed, 200, " ")),
                )
            })
            .collect(),
        ..Changeset::default()
    };
    commit(&storage, &mut index, changeset, "big")
        .await
        .unwrap();
    let lake = Lake::open(&storage, At::Latest).await.unwrap();
    let files = lake.files(Table::Conversations, &partition()).to_vec();
    assert!(files.len() >= 3, "{} files", files.len());
    let mut ranges: Vec<(i64, i64)> = files.iter().map(|f| f.id_range().unwrap()).collect();
    ranges.sort();
    for pair in ranges.windows(2) {
        assert!(pair[0].1 < pair[1].0, "overlapping ranges {ranges:?}");
    }
    for f in &files {
        assert!(
            f.size <= (FILE_BYTES + FILE_BYTES / 4) as u64,
            "{} bytes",
            f.size
        );
    }

    // A new version of one ticket: one conversations file is replaced, the others stay.
    let changeset = Changeset {
        placed: vec![placed_saying(300, 2, 0, 2025, 2, " changed")],
        ..Changeset::default()
    };
    commit(&storage, &mut index, changeset, "one")
        .await
        .unwrap();
    let after = Lake::open(&storage, At::Latest).await.unwrap();
    let now: Vec<&DataFile> = after
        .files(Table::Conversations, &partition())
        .iter()
        .collect();
    let kept = files
        .iter()
        .filter(|f| now.iter().any(|n| n.path == f.path))
        .count();
    assert_eq!(kept, files.len() - 1, "{files:?} then {now:?}");
    assert_eq!(now.len(), files.len());
    let conversations = rows(&storage, "conversations").await;
    assert_eq!(conversations.len(), 1200);
    let tickets = rows(&storage, "tickets").await;
    assert_eq!(tickets.len(), 600);
    assert!(
        tickets
            .iter()
            .any(|(_, id, subject)| *id == 300 && subject == "v2"),
        "{tickets:?}"
    );
}

#[tokio::test]
async fn a_checkpoint_is_found_again_in_every_domain_of_a_dataset() {
    // Before: a manifest was looked for at `_pending/<tag>/`, so another domain's checkpoints
    // (`_domains/<domain>/_pending/<tag>/`) were taken for orphans and deleted on recovery.
    let dir = tempfile::tempdir().unwrap();
    let (memory, local) = (
        Storage::from_store(Arc::new(InMemory::new()), "memory"),
        Storage::local(dir.path()).unwrap(),
    );
    let globex = crate::storage::layout::Scope::Domain("globex".into());
    // (A local directory keeps a checkpoint's documents flat, a store under their own paths.)
    for storage in [
        memory.clone(),
        memory.scoped(globex.clone()),
        local.clone(),
        local.scoped(globex),
    ] {
        let changeset = Changeset {
            placed: (1..=4).map(|i| placed(i, 1, 0, 2025, 1)).collect(),
            ..Changeset::default()
        };
        let written = pending::write(&storage, "default", &Index::default(), &changeset, "t-1")
            .await
            .unwrap();
        let (segments, orphans) = pending::load(&storage).await.unwrap();
        assert!(orphans.is_empty(), "{orphans:?}");
        assert_eq!(segments.len(), 1, "{:?}", storage.scope());
        assert_eq!(segments[0].tag, written.tag);
        assert_eq!(segments[0].docs.len(), 4);
    }
}

/// Documents a run wrote ahead (see [`Changeset::written`]) for tickets 1..=3 and 9, at the
/// paths of checkpoint `t-1`: ticket 3 has changed since, and 9 is not in the changeset.
async fn written_ahead(storage: &Storage) -> Changeset {
    let mut changeset = Changeset {
        placed: vec![
            placed(1, 1, 0, 2025, 1),
            placed(2, 1, 1, 2025, 2),
            placed(3, 2, 0, 2025, 1),
        ],
        ..Changeset::default()
    };
    for p in [
        placed(1, 1, 0, 2025, 1),
        placed(2, 1, 1, 2025, 2),
        placed(3, 1, 0, 2025, 1),
        placed(9, 1, 0, 2025, 1),
    ] {
        let path = storage.pending("t-1", &markdown::path_of(storage.scope(), &p));
        let bytes = Bytes::from(p.markdown.clone());
        storage.put(&path, bytes.clone()).await.unwrap();
        changeset.written.insert(p.ticket.ticket_id, (path, bytes));
    }
    changeset
}

#[tokio::test]
async fn documents_written_ahead_are_published_and_what_changed_since_is_written_again() {
    for local in [false, true] {
        // A table commit of the changeset in memory, and a checkpoint committed later.
        for through_checkpoint in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let storage = if local {
                Storage::local(dir.path()).unwrap()
            } else {
                Storage::from_store(Arc::new(InMemory::new()), "memory")
            };
            let changeset = written_ahead(&storage).await;
            let expected: Vec<(Path, String)> = changeset
                .placed
                .iter()
                .map(|p| (markdown::path_of(storage.scope(), p), p.markdown.clone()))
                .collect();
            let mut index = Index::default();
            if through_checkpoint {
                let mut lake = Lake::open(&storage, At::Latest).await.unwrap();
                let segment = checkpoint(&storage, &lake, &mut index, &changeset, "t-1")
                    .await
                    .unwrap();
                assert_eq!(segment.docs.len(), 3);
                commit_pending(
                    &storage,
                    &mut lake,
                    &mut index,
                    vec![segment],
                    Changeset::default(),
                    false,
                    "t-2",
                )
                .await
                .unwrap();
            } else {
                commit(&storage, &mut index, changeset, "t-1")
                    .await
                    .unwrap();
            }
            let case = format!("local {local}, through a checkpoint {through_checkpoint}");
            for (target, markdown) in &expected {
                let published = storage.get_existing(target).await.unwrap();
                assert_eq!(published.as_ref(), markdown.as_bytes(), "{case}: {target}");
            }
            assert!(
                expected[2].1.contains("v2"),
                "the newer version is the one published"
            );
            // Nothing is left of the writes ahead (ticket 9's among them) or of staging.
            for dir in ["_pending", "_staging"] {
                let left = storage.list(&Path::from(dir)).await.unwrap();
                assert!(left.is_empty(), "{case}: {left:?}");
                if local {
                    assert!(!dir_exists(&storage, dir), "{case}: {dir} is left");
                }
            }
            let ids: BTreeSet<i64> = rows(&storage, "tickets")
                .await
                .iter()
                .map(|r| r.1)
                .collect();
            assert_eq!(ids, BTreeSet::from([1, 2, 3]), "{case}");
        }
    }
}

fn dir_exists(storage: &Storage, dir: &str) -> bool {
    let root = storage.external_location(&Path::from(dir)).unwrap();
    std::path::Path::new(&root).exists()
}

#[test]
fn a_commit_is_foreseen_per_file_written_and_per_object_published() {
    use std::time::Duration;
    // A commit of two checkpoints: 56 files written in 80 ms, 600 objects (mostly the
    // checkpoints' documents) published in 252 ms.
    let checkpoints = CommitCost {
        files: 56,
        writing: Duration::from_millis(80),
        objects: 600,
        publishing: Duration::from_millis(252),
    };
    // The next commit: 76 files, 25 documents (their documents written ahead).
    let next = checkpoints.foresee(76, 25).unwrap();
    // 76 files at 1.43 ms and 102 objects at 0.42 ms: about 152 ms, where one figure per file
    // over both (5.9 ms) foresaw 450.
    assert!(
        (Duration::from_millis(145)..Duration::from_millis(160)).contains(&next),
        "{next:?}"
    );
    // More documents, or more files, take longer.
    assert!(checkpoints.foresee(76, 200).unwrap() > next);
    assert!(checkpoints.foresee(100, 25).unwrap() > next);
    // Nothing to foresee from a commit that wrote no file.
    assert_eq!(CommitCost::default().foresee(3, 3), None);
}
