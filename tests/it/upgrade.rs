//! Issue 11 part 3: a dataset written by the previous release (`tests/fixtures/dataset-v1`)
//! upgrades itself on the first run of this one, once, resumably and kill-safely; a dataset of
//! a newer format is refused.

use std::collections::BTreeMap;
use std::time::Instant;
use ticketsync::error::Classify;

use chrono::{DurationRound, Utc};
use object_store::path::Path;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use ticketsync::job::JobSpec;
use ticketsync::sim::{Plan, SimConfig, Simulator};
use ticketsync::sink::upgrade::{self, Format, FORMAT};
use ticketsync::storage::{S3Options, Storage};
use ticketsync::tables::Table;

use crate::support::{added_columns, canonical_rows, copy_dir, read_parquet, Cmd, Dump, Harness};

fn fixture_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dataset-v1")
}

fn storage_of(dir: &std::path::Path) -> Storage {
    Storage::open(dir.to_str().unwrap(), &S3Options::default()).unwrap()
}

/// The simulator the fixture was written from (seed 7, 12 tickets), at a fixed moment.
fn sim_config() -> SimConfig {
    SimConfig {
        tickets: 12,
        seed: 7,
        plan: Plan::Enterprise,
        minute_secs: 1.0,
        now: Utc::now()
            .duration_trunc(chrono::Duration::minutes(1))
            .unwrap(),
        ..SimConfig::default()
    }
}

/// A run that lists nothing (a window starting now) and neither re-scans nor reconciles: the
/// only change to the dataset is the upgrade.
fn quiet_spec(h: &Harness, now: chrono::DateTime<Utc>) -> JobSpec {
    JobSpec {
        since: Some(now),
        rescan_days: Some(0),
        reconcile: Some(false),
        ..h.spec()
    }
}

/// Per table, the rows of the fixture (as the old release wrote them) and their partitions.
async fn rows_by_table(storage: &Storage) -> BTreeMap<&'static str, Vec<String>> {
    let mut out = BTreeMap::new();
    for table in Table::ALL {
        let mut lines = Vec::new();
        for (_, path) in upgrade::parquet_files(storage)
            .await
            .unwrap()
            .into_iter()
            .filter(|(t, _)| *t == table)
        {
            for b in read_parquet(storage, &path).await {
                // Only the columns the old files have, so old and upgraded rows compare.
                let old: Vec<usize> = (0..b.num_columns())
                    .filter(|&i| {
                        !added_columns(table).contains(&b.schema().field(i).name().as_str())
                    })
                    .collect();
                // The partition, as the old layout names it (the upgrade moves it under a domain).
                let partition = path
                    .as_ref()
                    .rsplit_once('/')
                    .unwrap()
                    .0
                    .replace("/domain=acme", "");
                for line in canonical_rows(&b.project(&old).unwrap()) {
                    lines.push(format!("{partition} | {line}"));
                }
            }
        }
        lines.sort();
        out.insert(table.name(), lines);
    }
    out
}

/// Every partition file has today's schema, the added columns null in every (old) row.
async fn assert_upgraded(storage: &Storage) {
    assert_eq!(upgrade::format(storage).await.unwrap(), Format::Current);
    let files = upgrade::parquet_files(storage).await.unwrap();
    assert!(files.len() > 10);
    for (table, path) in files {
        for b in read_parquet(storage, &path).await {
            assert_eq!(b.schema(), table.schema(), "{path}");
            for name in added_columns(table) {
                let col = b.column_by_name(name).unwrap();
                assert_eq!(col.null_count(), b.num_rows(), "{path} {name}");
            }
        }
    }
    assert!(storage
        .list(&Path::from("_staging"))
        .await
        .unwrap()
        .is_empty());
    assert!(!storage
        .exists(&Path::from("_state/journal.json"))
        .await
        .unwrap());
}

/// Every object's bytes (without run reports and the lock).
async fn snapshot(storage: &Storage) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for path in storage.list(&Path::from("")).await.unwrap() {
        let p = path.to_string();
        if p.starts_with("_runs/") || p == "_state/lock.json" {
            continue;
        }
        out.insert(p, storage.get(&path).await.unwrap().unwrap().to_vec());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_dataset_is_upgraded_once_by_the_first_run() {
    let config = sim_config();
    let now = config.now;
    let h = Harness::with_config(config).await;
    copy_dir(&fixture_dir(), h.dir.path());
    let before_rows = rows_by_table(&h.storage).await;
    let before = Dump::of(&h.storage).await;
    let index = h
        .storage
        .get(&Path::from("_state/index.json"))
        .await
        .unwrap();
    assert_eq!(upgrade::format(&h.storage).await.unwrap(), Format::Older(1));

    let outcome = h.sync_with(quiet_spec(&h, now), None).await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(
        outcome.report.tickets.written, 0,
        "the run itself wrote nothing"
    );
    let done = outcome
        .report
        .format_upgrade
        .expect("the report says it upgraded");
    assert_eq!((done.from, done.to), (1, FORMAT));
    // Every file checked and moved into its Delta table (rejects too, though its columns did
    // not change).
    assert_eq!((done.files_checked, done.files_rewritten), (15, 15));
    assert_upgraded(&h.storage).await;
    // The same rows in the same files (old columns as written), the same markdown, the same index.
    assert_eq!(rows_by_table(&h.storage).await, before_rows);
    let after = Dump::of(&h.storage).await;
    assert_eq!(after.markdown, before.markdown);
    // The same files, each under the domain of the run.
    let moved: Vec<String> = before
        .files
        .iter()
        .map(|f| match f.split_once('/') {
            Some((table, rest)) if !f.starts_with("markdown/") => {
                format!("{table}/domain=acme/{rest}")
            }
            _ => f.clone(),
        })
        .collect();
    assert_eq!(after.files, moved);
    assert_eq!(
        h.storage
            .get(&Path::from("_state/index.json"))
            .await
            .unwrap(),
        index
    );
    let format = h
        .storage
        .get(&Path::from("_state/format.json"))
        .await
        .unwrap()
        .unwrap();
    let format: serde_json::Value = serde_json::from_slice(&format).unwrap();
    assert_eq!(format["format"], FORMAT);

    // Once: the next run rewrites nothing.
    let upgraded = snapshot(&h.storage).await;
    let outcome = h.sync_with(quiet_spec(&h, now), None).await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.report.format_upgrade, None, "once");
    let mut again = snapshot(&h.storage).await;
    again.remove("_state/cursor.json");
    let mut expected = upgraded;
    expected.remove("_state/cursor.json");
    assert_eq!(again, expected);
    h.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_dataset_gets_the_current_format_and_stays_readable() {
    let h = Harness::new(30, 2).await;
    assert_eq!(upgrade::format(&h.storage).await.unwrap(), Format::New);
    assert!(h.full_sync().await.error.is_none());
    assert_eq!(upgrade::format(&h.storage).await.unwrap(), Format::Current);
    h.sim.shutdown().await;
}

/// A kill at each point of the protocol, simulated exactly: staged files without a journal
/// (before the commit point), a journal written but not applied (after it), the first chunk
/// committed and the rest not. The next run ends where an uninterrupted upgrade ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_interrupted_anywhere_is_finished_by_the_next_run() {
    let config = sim_config();
    let now = config.now;

    // The clean upgrade.
    let clean = Harness::with_config(config).await;
    copy_dir(&fixture_dir(), clean.dir.path());
    let clean_rows = rows_by_table(&clean.storage).await;
    assert!(clean
        .sync_with(quiet_spec(&clean, now), None)
        .await
        .error
        .is_none());
    let clean_dump = Dump::of(&clean.storage).await;

    for case in [
        "before commit point",
        "after commit point",
        "after first chunk",
    ] {
        let h = Harness::with_config(sim_config()).await;
        copy_dir(&fixture_dir(), h.dir.path());
        let files = upgrade::parquet_files(&h.storage).await.unwrap();
        match case {
            "before commit point" => {
                // Staged rewrites (and a staged format file) but no journal.
                let tmp = Harness::with_config(sim_config()).await;
                copy_dir(&fixture_dir(), tmp.dir.path());
                upgrade::upgrade_chunk(&tmp.storage, &files, "x", true, "acme")
                    .await
                    .unwrap();
                for (_, path) in upgrade::parquet_files(&tmp.storage).await.unwrap() {
                    let staged = Path::from(format!("_staging/dead-upgrade-0/{path}"));
                    let bytes = tmp.storage.get(&path).await.unwrap().unwrap();
                    h.storage.put(&staged, bytes).await.unwrap();
                }
            }
            "after commit point" => {
                // The journal of the whole upgrade, written, nothing moved or committed yet.
                // A twin dataset commits the chunk; its files, staged, and the journal that
                // commits them are put into this one as a kill at the commit point leaves them.
                let mut journal = None;
                let tmp = Harness::with_config(sim_config()).await;
                copy_dir(&fixture_dir(), tmp.dir.path());
                let lake = ticketsync::state::delta::Lake::open(
                    &tmp.storage,
                    ticketsync::state::delta::At::Latest,
                )
                .await
                .unwrap();
                let mut j = ticketsync::state::Journal::new("dead-upgrade-0", lake.seq() + 1);
                upgrade::upgrade_chunk(&tmp.storage, &files, "x", true, "acme")
                    .await
                    .unwrap();
                let done = ticketsync::state::delta::Lake::open(
                    &tmp.storage,
                    ticketsync::state::delta::At::Latest,
                )
                .await
                .unwrap();
                for table in Table::ALL {
                    let change = j.tables.entry(table.name().to_string()).or_default();
                    for file in done.all_files(table) {
                        let object = file.object(table);
                        let staged = format!("_staging/dead-upgrade-0/{object}");
                        let bytes = tmp.storage.get(&object).await.unwrap().unwrap();
                        h.storage
                            .put(&Path::from(staged.as_str()), bytes)
                            .await
                            .unwrap();
                        j.moves.push((staged, object.to_string()));
                        change.adds.push(file.clone());
                    }
                }
                for (_, path) in &files {
                    j.deletes.push(path.to_string());
                }
                journal.replace(j);
                ticketsync::state::write_journal(&h.storage, journal.as_ref().unwrap())
                    .await
                    .unwrap();
                // The format file is not in that journal: files first, format last.
                assert_eq!(upgrade::format(&h.storage).await.unwrap(), Format::Older(1));
            }
            _ => {
                let step = upgrade::upgrade_chunk(
                    &h.storage,
                    &files[..5],
                    "dead-upgrade-0",
                    false,
                    "acme",
                )
                .await
                .unwrap();
                assert!(step.files_rewritten > 0, "{step:?}");
                assert_eq!(upgrade::format(&h.storage).await.unwrap(), Format::Older(1));
            }
        }
        let outcome = h.sync_with(quiet_spec(&h, now), None).await;
        assert!(outcome.error.is_none(), "{case}: {:?}", outcome.error);
        assert_upgraded(&h.storage).await;
        assert_eq!(rows_by_table(&h.storage).await, clean_rows, "{case}");
        let dump = Dump::of(&h.storage).await;
        assert_eq!(dump, clean_dump, "{case}");
        h.sim.shutdown().await;
    }
    clean.sim.shutdown().await;
}

fn command(sim: &Simulator, data: &str, since: &str) -> Cmd {
    let job = format!(
        "data = {data:?}\nbase_url = {:?}\nsince = {since:?}\nrescan_days = 0\nreconcile = false\nrate_window_secs = 1.0\n",
        sim.base_url()
    );
    let job_path = std::path::Path::new(data).with_extension("toml");
    std::fs::write(&job_path, job).unwrap();
    Cmd::new(["sync", "--job", job_path.to_str().unwrap()])
        .quiet()
        .api_key(sim.api_key())
}

/// The real binary, SIGKILLed at seeded moments of its first run on an old dataset, then rerun
/// to completion: the dataset equals a clean upgrade's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_killed_during_an_upgrade_then_rerun_equals_a_clean_upgrade() {
    let config = sim_config();
    let since = config
        .now
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let sim = Simulator::start(config, 0).await.unwrap();

    let root = tempfile::tempdir().unwrap();
    let clean_dir = root.path().join("clean");
    copy_dir(&fixture_dir(), &clean_dir);
    let started = Instant::now();
    let ran = command(&sim, clean_dir.to_str().unwrap(), &since)
        .run()
        .await;
    let clean_time = started.elapsed();
    assert_eq!(ran.code, Some(0), "clean run");
    let clean = Dump::of(&storage_of(&clean_dir)).await;
    assert_upgraded(&storage_of(&clean_dir)).await;

    // Files of the fixture that already have today's schema (notes, rejects).
    let conforming = |storage: Storage| async move {
        let mut n = 0;
        for (table, path) in upgrade::parquet_files(&storage).await.unwrap() {
            if read_parquet(&storage, &path).await[0].schema() == table.schema() {
                n += 1;
            }
        }
        n
    };
    let fresh = root.path().join("fresh");
    copy_dir(&fixture_dir(), &fresh);
    let baseline = conforming(storage_of(&fresh)).await;

    let mut rng = StdRng::seed_from_u64(11);
    let mut mid_upgrade = 0;
    for point in 0..6 {
        let dir = root.path().join(format!("killed-{point}"));
        copy_dir(&fixture_dir(), &dir);
        let data = dir.to_str().unwrap().to_string();
        for _ in 0..2 {
            let mut child = command(&sim, &data, &since).spawn();
            let at = clean_time.mul_f64(rng.gen_range(0.05..0.9));
            std::thread::sleep(at);
            let _ = child.kill();
            let _ = child.wait();
            let storage = storage_of(&dir);
            // Count the kills that left the upgrade half done (some files new, some old).
            if upgrade::format(&storage).await.unwrap() != Format::Current {
                let journal = storage
                    .exists(&Path::from("_state/journal.json"))
                    .await
                    .unwrap();
                let staged = !storage
                    .list(&Path::from("_staging"))
                    .await
                    .unwrap()
                    .is_empty();
                if journal || staged || conforming(storage).await > baseline {
                    mid_upgrade += 1;
                }
            }
        }
        let ran = command(&sim, &data, &since).run().await;
        assert_eq!(ran.code, Some(0), "rerun after kill point {point}");
        let storage = storage_of(&dir);
        assert_upgraded(&storage).await;
        assert_eq!(Dump::of(&storage).await, clean, "kill point {point}");
    }
    eprintln!("{mid_upgrade} of 12 kills left the upgrade half done");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_format_is_refused_with_exit_3() {
    let h = Harness::new(10, 1).await;
    copy_dir(&fixture_dir(), h.dir.path());
    h.storage
        .put(
            &Path::from("_state/format.json"),
            bytes::Bytes::from_static(b"{\"format\": 99}"),
        )
        .await
        .unwrap();
    let before = snapshot(&h.storage).await;

    let err = h
        .try_sync_with(h.spec(), None)
        .await
        .expect_err("a newer format is refused");
    assert_eq!(
        err.class(),
        ticketsync::error::Class::Config,
        "a configuration error: {err}"
    );

    let out = h
        .cmd("sync")
        .data(h.data())
        .args(["--log-format", "json"])
        .run()
        .await;
    assert_eq!(out.code, Some(3));
    let stderr = &out.stderr;
    assert!(
        stderr.contains("has format 99") && stderr.contains(&format!("knows format {FORMAT}")),
        "{stderr}"
    );
    assert_eq!(snapshot(&h.storage).await, before, "nothing was written");
    assert_eq!(h.sim.requests(), 0, "no API call either");
    h.sim.shutdown().await;
}
