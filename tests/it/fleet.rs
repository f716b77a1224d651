//! Fleets: several Freshservice accounts (one per client) in one dataset. Their ticket ids
//! collide; the `domain` partition and each domain's own state keep them apart.
//!
//! The oracle: each domain of a fleet's dataset holds exactly what a dataset of that account
//! alone holds (its rows, rejects and documents), whatever the other accounts do — a refused
//! key, a second process writing the same dataset at the same time.

use std::collections::{BTreeMap, BTreeSet};

use ticketsync::job::JobSpec;
use ticketsync::pipeline;
use ticketsync::sim::{Plan, SimConfig, Simulator};
use ticketsync::storage::{S3Options, Storage};

use crate::support::cmd::Cmd;
use crate::support::s3::S3Server;
use crate::support::{Dump, S3_PREFIX};

/// One simulated Freshservice account of a fleet.
struct Account {
    domain: &'static str,
    sim: Simulator,
    /// Accounts come from workspaces (Freshservice for MSPs).
    workspaces: bool,
    /// Every department of this account maps to this account number (`account_map`): the
    /// MSP's customer whose tickets moved here from another account, so one account number
    /// has colliding ticket ids in two domains.
    moved_to: Option<&'static str>,
}

impl Account {
    fn key_env(&self) -> String {
        format!("KEY_{}", self.domain.to_ascii_uppercase())
    }

    /// The account map CSV for `moved_to`, written into `dir`.
    fn account_map(&self, dir: &std::path::Path) -> Option<std::path::PathBuf> {
        let account = self.moved_to?;
        let mut csv = String::from("department_id,account_number\n");
        for d in &self.sim.ground_truth().departments {
            csv += &format!("{},{account}\n", d.id);
        }
        let path = dir.join(format!("{}-accounts.csv", self.domain));
        std::fs::write(&path, csv).unwrap();
        Some(path)
    }
}

/// Three accounts whose ticket ids collide (the generator numbers tickets the same way for every
/// seed); `globex` keeps its clients in workspaces.
async fn accounts() -> Vec<Account> {
    let sim = |seed: u64, tickets: usize, workspaces: usize| {
        Simulator::start(
            SimConfig {
                seed,
                tickets,
                workspaces,
                plan: Plan::Enterprise,
                minute_secs: 1.0,
                ..SimConfig::default()
            },
            0,
        )
    };
    vec![
        Account {
            domain: "acme",
            sim: sim(11, 120, 1).await.unwrap(),
            workspaces: false,
            moved_to: None,
        },
        Account {
            domain: "globex",
            sim: sim(12, 120, 3).await.unwrap(),
            workspaces: true,
            moved_to: None,
        },
        Account {
            domain: "initech",
            sim: sim(13, 80, 1).await.unwrap(),
            workspaces: false,
            moved_to: Some("482913"),
        },
    ]
}

/// A fleet job file of `accounts` into `data`.
fn job_file(
    dir: &std::path::Path,
    data: &str,
    s3: Option<&S3Server>,
    accounts: &[&Account],
) -> String {
    let mut text = format!(
        "data = {data:?}\nfull_sync = true\nrate_window_secs = 1.0\ncheckpoint_every = 50\nrejects_exit_code = 0\n"
    );
    if let Some(server) = s3 {
        let o = server.options();
        text += &format!(
            "[s3]\nendpoint = {:?}\nregion = {:?}\npath_style = true\nallow_http = true\n",
            o.endpoint.unwrap(),
            o.region.unwrap()
        );
    }
    for a in accounts {
        text += &format!(
            "\n[[accounts]]\ndomain = {:?}\nbase_url = {:?}\napi_key_env = {:?}\n",
            a.domain,
            a.sim.base_url(),
            a.key_env()
        );
        if a.workspaces {
            text += "account_from = \"workspace\"\n";
        }
        if let Some(map) = a.account_map(dir) {
            text += &format!("account_map = {:?}\n", map.to_str().unwrap());
        }
    }
    let path = dir.join("fleet.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// `ticketsync sync --job <job>` with every account's key in its variable (`refused`: a key the
/// account does not accept).
fn fleet_cmd(job: &str, accounts: &[&Account], refused: Option<&str>) -> Cmd {
    with_keys(Cmd::new(["sync", "--job", job]), accounts, refused)
}

/// `cmd` with every account's key in its variable, as [`fleet_cmd`].
fn with_keys(cmd: Cmd, accounts: &[&Account], refused: Option<&str>) -> Cmd {
    accounts.iter().fold(cmd, |cmd, a| {
        let key = match refused {
            Some(d) if d == a.domain => "a-revoked-key".to_string(),
            _ => a.sim.api_key(),
        };
        cmd.env(&a.key_env(), key)
    })
}

/// The dataset of `account` synced alone (its own domain, in-process).
async fn alone(account: &Account) -> (tempfile::TempDir, Dump) {
    let dir = tempfile::tempdir().unwrap();
    let maps = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path().to_str().unwrap(), &S3Options::default()).unwrap();
    let spec = JobSpec {
        data: Some(dir.path().to_str().unwrap().to_string()),
        base_url: Some(account.sim.base_url()),
        domain: Some(account.domain.into()),
        full_sync: Some(true),
        rate_window_secs: Some(1.0),
        checkpoint_every: Some(50),
        account_from: account
            .workspaces
            .then_some(ticketsync::job::AccountFrom::Workspace),
        account_map: account.account_map(maps.path()),
        ..JobSpec::default()
    };
    let job = ticketsync::job::Job::resolve(spec, None).unwrap();
    let source = ticketsync::source::Source::new(ticketsync::source::ClientConfig {
        base_url: url::Url::parse(&account.sim.base_url()).unwrap(),
        api_key: account.sim.api_key(),
        limiter: job.limiter.clone(),
        retry: Default::default(),
        timeout: std::time::Duration::from_secs(10),
        max_response_bytes: job.max_response_bytes,
    })
    .unwrap();
    let outcome = pipeline::run(&job, std::sync::Arc::new(source), &storage)
        .await
        .unwrap();
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let dump = Dump::of(&storage).await;
    (dir, dump)
}

/// The rows of one domain: every table's lines whose partition is that domain's.
fn rows_of(dump: &Dump, domain: &str) -> BTreeMap<&'static str, Vec<String>> {
    let mine = |line: &&String| {
        let partition = line.split(" | ").next().unwrap_or("");
        partition
            .split('/')
            .any(|segment| segment == format!("domain={domain}"))
    };
    dump.rows
        .iter()
        .map(|(table, lines)| (*table, lines.iter().filter(mine).cloned().collect()))
        .collect()
}

/// The documents of one domain, by their path in a dataset of that domain alone.
fn documents_of(dump: &Dump, domain: &str, home: bool) -> BTreeMap<String, String> {
    let prefix = format!("markdown/domain={domain}/");
    dump.markdown
        .iter()
        .filter_map(|(path, text)| {
            let rest = match path.strip_prefix(&prefix) {
                Some(rest) => format!("markdown/{rest}"),
                None if home && !path.starts_with("markdown/domain=") => path.clone(),
                None => return None,
            };
            Some((rest, text.clone()))
        })
        .collect()
}

fn ticket_ids(dump: &Dump, domain: &str) -> BTreeSet<String> {
    rows_of(dump, domain)["tickets"]
        .iter()
        .filter_map(|l| {
            l.split(" | ")
                .nth(1)?
                .split(' ')
                .find_map(|kv| kv.strip_prefix("ticket_id=").map(str::to_string))
        })
        .collect()
}

/// Asserts that `domain` in `fleet` is exactly `alone`, rows and documents.
fn assert_domain_exact(fleet: &Dump, alone: &Dump, domain: &str, home: bool) {
    let mine = rows_of(fleet, domain);
    let theirs = rows_of(alone, domain);
    for (table, lines) in &theirs {
        assert_eq!(
            &mine[table], lines,
            "{domain}: table {table} differs from the account synced alone"
        );
    }
    assert!(!theirs["tickets"].is_empty(), "{domain} has placed tickets");
    assert_eq!(
        documents_of(fleet, domain, home),
        documents_of(alone, domain, true),
        "{domain}: documents differ from the account synced alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_syncs_each_account_exactly_and_a_refused_key_fails_only_its_own() {
    let accounts = accounts().await;
    let all: Vec<&Account> = accounts.iter().collect();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let job = job_file(dir.path(), data, None, &all);
    let ran = fleet_cmd(&job, &all, Some("initech")).run().await;
    assert_eq!(
        ran.code,
        Some(2),
        "a failed account fails the fleet run: {}",
        ran.stderr
    );
    assert!(ran.stderr.contains("fleet failed"), "{}", ran.stderr);
    assert!(
        !ran.stderr.contains("a-revoked-key"),
        "the refused key is never shown: {}",
        ran.stderr
    );

    // One summary, naming the failed account; each account that ran has its own report.
    let runs = std::path::Path::new(data).join("_runs");
    let fleet_file = std::fs::read_dir(&runs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".fleet.json"))
        .expect("a fleet summary");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fleet_file).unwrap()).unwrap();
    let status = |d: &str| {
        summary["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["domain"] == d)
            .map(|a| a["status"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(summary["status"], "failed");
    assert!(status("acme").starts_with("ok"), "{summary}");
    assert!(status("globex").starts_with("ok"), "{summary}");
    assert!(!status("initech").starts_with("ok"), "{summary}");

    // The refused account's cursor did not move (it has none); the others' did.
    let root = std::path::Path::new(data);
    assert!(
        root.join("_state/cursor.json").exists(),
        "acme, the first account, is the home domain"
    );
    assert!(root.join("_domains/globex/_state/cursor.json").exists());
    assert!(!root.join("_domains/initech/_state/cursor.json").exists());

    let storage = Storage::open(data, &S3Options::default()).unwrap();
    let fleet = Dump::of(&storage).await;
    assert!(rows_of(&fleet, "initech").values().all(Vec::is_empty));
    // The ids really collide, and both domains keep theirs.
    let shared: Vec<_> = ticket_ids(&fleet, "acme")
        .intersection(&ticket_ids(&fleet, "globex"))
        .cloned()
        .collect();
    assert!(!shared.is_empty(), "the accounts share ticket ids");
    for (account, home) in [(&accounts[0], true), (&accounts[1], false)] {
        let (_dir, solo) = alone(account).await;
        assert_domain_exact(&fleet, &solo, account.domain, home);
    }

    // The key fixed, the next fleet run syncs the third account too and the others again
    // (incrementally: nothing changed).
    let ran = fleet_cmd(&job, &all, None).run().await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(root.join("_domains/initech/_state/cursor.json").exists());
    let fleet = Dump::of(&storage).await;
    let (_dir, solo) = alone(&accounts[2]).await;
    assert_domain_exact(&fleet, &solo, "initech", false);

    // Account 482913 (the MSP's customer number) has tickets in acme and in initech, with
    // colliding ticket and conversation ids: its tickets come from both, each with its own
    // domain's conversations and notes, and its hours are both domains' together.
    let dataset = ticketsync::query::Dataset::open(data, &S3Options::default()).unwrap();
    let query = ticketsync::query::TicketQuery {
        account: "482913".into(),
        year: None,
        basis: ticketsync::query::Basis::Updated,
    };
    let docs = dataset.tickets(&query).await.unwrap();
    let domains: BTreeSet<&str> = docs.iter().map(|d| d.domain.as_str()).collect();
    assert_eq!(
        domains,
        BTreeSet::from(["acme", "initech"]),
        "tickets of both accounts"
    );
    let sim_of = |d: &str| &accounts.iter().find(|a| a.domain == d).unwrap().sim;
    let mut shared = 0;
    for doc in &docs {
        let truth = sim_of(&doc.domain).ground_truth();
        let t = truth
            .ticket(doc.ticket_id)
            .expect("a ticket of its own domain");
        let public: BTreeSet<i64> = t
            .conversations
            .iter()
            .filter(|c| !c.private)
            .map(|c| c.id)
            .collect();
        let private: BTreeSet<i64> = t
            .conversations
            .iter()
            .filter(|c| c.private)
            .map(|c| c.id)
            .collect();
        let got: BTreeSet<i64> = doc.conversations.iter().map(|c| c.id).collect();
        let notes: BTreeSet<i64> = doc.notes.iter().map(|n| n.id).collect();
        assert_eq!(
            got, public,
            "{} #{}: its own conversations only",
            doc.domain, doc.ticket_id
        );
        assert_eq!(
            notes, private,
            "{} #{}: its own notes only",
            doc.domain, doc.ticket_id
        );
        if docs
            .iter()
            .any(|o| o.ticket_id == doc.ticket_id && o.domain != doc.domain)
        {
            shared += 1;
        }
    }
    assert!(
        shared > 0,
        "the account has colliding ticket ids in its two domains"
    );
    // --domain keeps one.
    let acme_only = dataset
        .clone()
        .in_domain(Some("acme".into()))
        .tickets(&query)
        .await
        .unwrap();
    assert!(!acme_only.is_empty() && acme_only.iter().all(|d| d.domain == "acme"));
    assert_eq!(
        acme_only.len(),
        docs.iter().filter(|d| d.domain == "acme").count()
    );
    // The yearly rollup counts the tickets of both domains (colliding ids counted twice).
    let year = docs[0]
        .last_updated_at
        .format("%Y")
        .to_string()
        .parse()
        .unwrap();
    let rollup = |dataset: ticketsync::query::Dataset, basis| async move {
        dataset
            .rollup(&ticketsync::query::RollupQuery {
                account: Some("482913".into()),
                year,
                period: ticketsync::query::Period::Year,
                basis,
            })
            .await
            .unwrap()
    };
    for basis in [
        ticketsync::query::Basis::Updated,
        ticketsync::query::Basis::Worked,
    ] {
        let both = rollup(dataset.clone(), basis).await;
        let one = rollup(dataset.clone().in_domain(Some("acme".into())), basis).await;
        let other = rollup(dataset.clone().in_domain(Some("initech".into())), basis).await;
        let minutes =
            |rows: &[ticketsync::query::RollupRow]| rows.iter().map(|r| r.minutes).sum::<i64>();
        let tickets =
            |rows: &[ticketsync::query::RollupRow]| rows.iter().map(|r| r.tickets).sum::<u64>();
        assert_eq!(minutes(&both), minutes(&one) + minutes(&other), "{basis:?}");
        assert_eq!(tickets(&both), tickets(&one) + tickets(&other), "{basis:?}");
    }
}

/// Two processes, one per account, writing the same dataset at once (a CronJob per client)
/// give the dataset one fleet run gives.
async fn two_processes_equal_one_fleet_run(s3: Option<S3Server>) {
    let accounts = accounts().await;
    let two: Vec<&Account> = accounts.iter().take(2).collect();
    let dir = tempfile::tempdir().unwrap();

    let one_data = dir.path().join("one");
    let one_dir = tempfile::tempdir_in(dir.path()).unwrap();
    let one_job = job_file(one_dir.path(), one_data.to_str().unwrap(), None, &two);
    let ran = fleet_cmd(&one_job, &two, None).run().await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let one =
        Dump::of(&Storage::open(one_data.to_str().unwrap(), &S3Options::default()).unwrap()).await;

    let (data, storage) = match &s3 {
        Some(server) => (server.url(S3_PREFIX), server.storage(S3_PREFIX)),
        None => {
            let path = dir.path().join("two").to_str().unwrap().to_string();
            let storage = Storage::open(&path, &S3Options::default()).unwrap();
            (path, storage)
        }
    };
    let job = job_file(dir.path(), &data, s3.as_ref(), &two);
    let runs = two.iter().map(|a| {
        let cmd = fleet_cmd(&job, &two, None).args(["--domain", a.domain]);
        let cmd = match &s3 {
            Some(server) => cmd.s3(server),
            None => cmd,
        };
        cmd.run()
    });
    for ran in futures::future::join_all(runs).await {
        assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    }
    let both = Dump::of(&storage).await;
    assert_eq!(
        both.rows, one.rows,
        "rows of two processes and of one fleet run"
    );
    assert_eq!(both.markdown, one.markdown, "documents");
    assert_eq!(both.files, one.files, "objects");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_local_dataset_equal_one_fleet_run() {
    two_processes_equal_one_fleet_run(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_s3_dataset_equal_one_fleet_run() {
    two_processes_equal_one_fleet_run(Some(S3Server::start().await)).await;
}

/// `check` of a fleet job checks every account against its own API and sums the estimate;
/// `forget` and `export-person` go through every domain of the dataset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_forget_and_export_cover_every_account_of_a_fleet() {
    let accounts = accounts().await;
    let all: Vec<&Account> = accounts.iter().collect();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let job = job_file(dir.path(), data, None, &all);

    let ran = with_keys(
        Cmd::new(["check", "--job", &job, "--format", "json"]),
        &all,
        Some("initech"),
    )
    .run()
    .await;
    assert_eq!(
        ran.code,
        Some(3),
        "a refused key is a problem: {}",
        ran.stderr
    );
    let report = ran.json();
    let accounts_checked = report["accounts"].as_array().unwrap();
    assert_eq!(accounts_checked.len(), 3);
    for a in accounts_checked {
        let ok = a["ok"].as_bool().unwrap();
        assert_eq!(ok, a["domain"] != "initech", "{a}");
        if a["domain"] != "initech" {
            assert!(a["estimate"]["closed"].as_u64().unwrap() > 0, "{a}");
        }
    }
    assert!(!ran.stdout.contains("a-revoked-key"));
    let sum: u64 = accounts_checked
        .iter()
        .filter_map(|a| a["estimate"]["credits"].as_u64())
        .sum();
    assert_eq!(report["total"]["credits"].as_u64(), Some(sum));

    let ran = fleet_cmd(&job, &all, None).run().await;
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    // Someone who requested tickets of acme, as the dataset holds them.
    let storage = Storage::open(data, &S3Options::default()).unwrap();
    let email = rows_of(&Dump::of(&storage).await, "acme")["tickets"]
        .iter()
        .find_map(|l| {
            l.split(' ')
                .find_map(|kv| kv.strip_prefix("requester_email="))
                .filter(|e| e.contains('@'))
                .map(str::to_string)
        })
        .expect("a ticket of acme with a requester");
    let export = |data: &str| Cmd::new(["export-person", "--data", data, "--email", &email]);
    let before = export(data).run().await;
    assert_eq!(before.code, Some(0), "{}", before.stderr);
    assert!(
        before.json()["counts"]["tickets_requested"]
            .as_u64()
            .unwrap()
            > 0
    );
    let forgot = Cmd::new(["forget", "--data", data, "--email", &email])
        .run()
        .await;
    assert_eq!(forgot.code, Some(0), "{}", forgot.stderr);
    for domain in ["acme", "globex", "initech"] {
        assert!(
            forgot.stdout.contains(&format!("domain {domain}:")),
            "{domain}: {}",
            forgot.stdout
        );
    }
    let after = export(data).run().await;
    assert_eq!(after.code, Some(0), "{}", after.stderr);
    assert_eq!(
        after.json()["counts"]["tickets_requested"],
        0,
        "{}",
        after.stdout
    );
    assert!(
        after.json()["tickets"].as_array().unwrap().is_empty(),
        "{}",
        after.stdout
    );
}
