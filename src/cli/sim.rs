//! `ticketsync sim`: serve the built-in Freshservice simulator until Ctrl-C.

use clap::Args;

use super::Completion;
use crate::sim::{Plan, SimConfig, Simulator};

/// Serve the built-in Freshservice simulator on 127.0.0.1.
///
/// Seeded, realistic data (departments with and without account numbers, agents, requesters,
/// tickets of every status with messy HTML, private notes and time entries), Basic auth, paging,
/// and the plan's rate limits with the real headers and 429s. Point a sync at it:
///
/// Examples:
///   ticketsync sim --port 8089 --tickets 3000 --plan growth --minute-secs 6
///   FRESHSERVICE_API_KEY=sim-api-key ticketsync sync --base-url http://127.0.0.1:8089 \
///       --data ./data --full-sync --rate-window-secs 6
///   ticketsync sim --workspaces 3 --quirk ignore-filter --quirk loop-link=tickets_list:2
///   ticketsync sim --accounts 3 --port 8089     three accounts on ports 8089, 8090, 8091
///
/// --accounts N serves N accounts, one port each from --port on, each its own data (seeds
/// --seed, --seed+1, …) and its own rate limits; their ticket ids collide, as those of real
/// Freshservice accounts do (a fleet job's [[accounts]] point their base_url at them).
///
/// --quirk makes it answer like a misbehaving server, proxy or gateway (repeatable):
///   ignore-filter               filter=deleted|spam answered with the live listing
///   ignore-workspace            workspace_id ignored: every ticket listing is the primary's
///   loop-link=ENDPOINT:PAGE     that page's Link points at itself (e.g. tickets_list:2)
///   empty-page=ENDPOINT:PAGE    that page has no rows but a Link to the next
///   malformed-department=ID     that department's record does not decode
///   unlisted-department=ID      left out of GET /departments (GET /departments/ID serves it)
///   malformed-ticket-view=ID    GET /tickets/ID does not decode
///
/// --mutate NAME[=FIELD]@ENDPOINT[:PAGE] is the hostile-API layer (repeatable): without :PAGE it
/// hits every page of the endpoint, with it that page once. ENDPOINT is tickets_list,
/// ticket_view, conversations, time_entries, departments, workspaces, agents, requesters, …
///   strip-link  raw-comma-link  split-link  param-link   Link header dropped or rewritten
///   drop-rate-headers                                    no X-RateLimit-* headers
///   reverse  duplicate-first  drop-first                 items reordered, repeated, dropped
///                                                        (drop-first only on linked pages)
///   id-as-string  numbers-as-strings  integers-as-floats JSON types drift, values kept
///   null-field=F  object-to-array=F  word-field=F        a field spoiled (word: "Email")
///   invalid-utf8                                         one invalid byte in the body
///   newest-first                                         child lists served newest first
///   delete-first  spam-first  reopen-first  touch-first  after the page is served: its first
///   move-workspace  create-ticket  log-time              ticket changes (or moves to the next
///                                                        workspace), a ticket is created,
///                                                        15 minutes are logged
///   delete-child-first                                   a linked child page's first child is
///                                                        deleted after it is served
///   ignore-page                                          page 1 served whatever page is asked
///   e.g. --mutate strip-link@tickets_list --mutate delete-first@tickets_list:1
/// --clock-skew SECS runs the server's clock (Date header, new timestamps) off real time.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct SimArgs {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8089)]
    pub port: u16,

    /// Accounts to serve, one port each from --port on (1 to 32).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub accounts: u16,
    /// Tickets to generate (all statuses; about three quarters are closed).
    #[arg(long, default_value_t = 200)]
    pub tickets: usize,
    /// Workspaces (clients, in Freshservice for MSPs), one of them primary: ticket listings
    /// without workspace_id return the primary one only. 1 = an account without the feature
    /// (GET /workspaces answers 404). At most 1000.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub workspaces: u16,
    /// Seed of the generated data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Rate-limit plan: starter (100/min), growth (200), pro (400), enterprise (500).
    #[arg(long, default_value = "growth")]
    pub plan: Plan,
    /// Length of the rate window in seconds (60 = real time; smaller runs faster).
    #[arg(long, default_value_t = 60.0)]
    pub minute_secs: f64,
    /// Latency added to every response, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// A server misbehaviour to reproduce (see above); repeatable.
    #[arg(long, value_name = "QUIRK")]
    pub quirk: Vec<crate::sim::QuirkArg>,
    /// A hostile-API mutation (see above); repeatable.
    #[arg(long, value_name = "MUTATION")]
    pub mutate: Vec<crate::sim::MutationArg>,
    /// Seconds the server's clock runs ahead of real time (negative: behind).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub clock_skew: i64,
}

/// Runs `ticketsync sim`: serves the simulator until interrupted.
pub async fn run(args: SimArgs) -> super::Result<Completion> {
    let mut sims = Vec::new();
    for i in 0..args.accounts {
        let port = args.port.checked_add(i).ok_or_else(|| {
            super::Error::config(format!(
                "--port {} + --accounts {} passes 65535",
                args.port, args.accounts
            ))
        })?;
        if args.accounts > 1 {
            println!("Account {} of {}:", i + 1, args.accounts);
        }
        sims.push(serve(&args, port, args.seed.wrapping_add(u64::from(i))).await?);
    }
    println!("Ctrl-C stops it.");
    tokio::signal::ctrl_c()
        .await
        .map_err(|e| super::Error::failed(e).context("waiting for Ctrl-C"))?;
    for sim in sims {
        sim.shutdown().await;
    }
    Ok(Completion::Ok)
}

/// Starts one simulated account on `port` with `seed`, and says where it is.
async fn serve(args: &SimArgs, port: u16, seed: u64) -> super::Result<Simulator> {
    let config = SimConfig {
        seed,
        tickets: args.tickets,
        workspaces: args.workspaces.into(),
        plan: args.plan,
        minute_secs: args.minute_secs,
        latency_ms: args.latency_ms,
        latency_jitter_ms: args.latency_ms / 4,
        ..SimConfig::default()
    };
    let sim = Simulator::start(config, port).await.map_err(|e| {
        super::Error::failed(e).context(format!("cannot listen on 127.0.0.1:{port}"))
    })?;
    let quirks = crate::sim::Quirks::from_args(&args.quirk).map_err(super::Error::config)?;
    sim.set_quirks(quirks);
    sim.hostile()
        .set(args.mutate.iter().map(|m| m.0.clone()).collect());
    sim.hostile().set_clock_skew(args.clock_skew);
    println!("Freshservice simulator at {}", sim.base_url());
    let workspaces = sim.ground_truth().workspaces;
    if !workspaces.is_empty() {
        let ids: Vec<String> = workspaces.iter().map(|w| w.id.to_string()).collect();
        println!(
            "Workspaces: {} (primary {})",
            ids.join(", "),
            workspaces[0].id
        );
    }
    println!(
        "API key: {}  (export FRESHSERVICE_API_KEY={})",
        sim.api_key(),
        sim.api_key()
    );
    Ok(sim)
}
