//! The randomized, seeded sync test (DESIGN.md section 11): N clients (default 4) write
//! random inserts, updates and deletes on shared ids, go offline and online, push and
//! pull at random moments, each through its own fault-injecting proxy
//! (`sync_tests::proxy`), each with its own conflict policy (server wins, client wins,
//! merge, left to the app). At the end, with faults off, every client syncs until quiet,
//! and `sync_tests::oracle` checks convergence, the server's history, and that nothing
//! acknowledged was lost or duplicated.
//!
//! Every run is a pure function of its seed (the server runs on a manual clock and the
//! steps run one at a time). A failing seed is printed; replay it with
//! `SYNC_SEED=<seed> cargo test -p sync-tests --test reliability_sync`.
//!
//! Knobs: `SYNC_RELIABILITY_SEEDS` (seeds 1..=N, default 8), `SYNC_SEED` (one seed),
//! `SYNC_STEPS` (steps per seed, default 300), `SYNC_CLIENTS` (default 4).
//!
//! The engine-only mode (`engine_only_clients_...`) runs the same workload with no push
//! or pull call at all: each client runs the sync engine through its faulty proxy, and
//! the steps only write, settle errors (as an app does) and take clients offline and
//! online. After the faults stop, every client must converge by itself within
//! `ENGINE_CONVERGE_WITHIN`, then the same judge runs. Its seeds are
//! `SYNC_ENGINE_SEEDS` (1..=N, default 4) or `SYNC_SEED`. The engines run beside the
//! steps, so a seed fixes the workload but not every interleaving.

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use sync_runtime::{ProtocolVersion, Store, SyncEngine};
use sync_tests::proxy::{FaultPlan, FaultStats, Journal, Proxy};
use sync_tests::workload::{Actor, ClientConfig, EventLog, pick_id, sync_until_quiet};
use sync_tests::{Rng, oracle};

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

struct Outcome {
    stats: FaultStats,
    verdict: oracle::Verdict,
    rounds: u32,
}

/// How the clients sync: by explicit calls at random steps, or only by their engines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Calls,
    EngineOnly,
}

/// How long the engines have, once the faults stop, to converge by themselves.
const ENGINE_CONVERGE_WITHIN: Duration = Duration::from_secs(60);

fn run_seed(seed: u64, steps: u64, clients: usize, mode: Mode) -> Result<Outcome, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let clock = sync_server::ManualClock::new(time::macros::datetime!(2026-05-01 12:00:00.000 UTC));
    let server = TestServer::start_with_clock(&dir.path().join("server.db"), clock);
    let journal = Journal::new();
    let proxies: Vec<Proxy> = (0..clients)
        .map(|i| {
            let p = Proxy::start_with(
                server.addr,
                seed.wrapping_mul(31).wrapping_add(i as u64),
                &format!("c{i}"),
                journal.clone(),
            );
            p.set_plan(FaultPlan::chaos());
            p
        })
        .collect();
    let protocol = if seed % 2 == 0 { ProtocolVersion::V2 } else { ProtocolVersion::V3 };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let log = EventLog::new();
        let mut actors = Vec::new();
        for (i, proxy) in proxies.iter().enumerate() {
            let store = Store::open(dir.path().join(format!("c{i}.db"))).await.map_err(|e| e.to_string())?;
            let config = ClientConfig { index: i, url: proxy.url(), protocol, prefix: String::new(), page_size: 3 };
            actors.push(Actor::open(store, &config, &log).await.map_err(|e| e.to_string())?);
        }
        let engines: Vec<SyncEngine> = match mode {
            Mode::Calls => Vec::new(),
            Mode::EngineOnly => actors.iter().map(start_engine).collect::<Result<_, _>>()?,
        };
        let mut rng = Rng::new(seed);
        for step in 0..steps {
            let c = rng.below(clients as u64) as usize;
            let roll = rng.below(100);
            let at = |e: String| format!("step {step}: {e}");
            if mode == Mode::EngineOnly {
                match roll {
                    0..70 => {
                        let id = pick_id(&mut rng, step);
                        if let Err(e) = actors[c].write(&mut rng, &id).await {
                            let story = oracle::history(&log.snapshot(), &journal.snapshot(), &id);
                            return Err(at(format!("{e}\n\n{story}")));
                        }
                    }
                    70..80 => proxies[c].set_offline(!proxies[c].is_offline()),
                    80..88 => {
                        actors[c].settle_errors(Some(&mut rng)).await.map_err(at)?;
                    }
                    // The engines get the time to run.
                    _ => tokio::time::sleep(Duration::from_millis(rng.below(30))).await,
                }
                continue;
            }
            match roll {
                0..55 => {
                    let id = pick_id(&mut rng, step);
                    actors[c].write(&mut rng, &id).await.map_err(at)?;
                }
                55..67 => {
                    actors[c].push().await.map_err(at)?;
                }
                67..79 => {
                    actors[c].pull().await.map_err(at)?;
                }
                79..86 => {
                    actors[c].push().await.map_err(at)?;
                    actors[c].pull().await.map_err(at)?;
                }
                86..92 => proxies[c].set_offline(!proxies[c].is_offline()),
                _ => {
                    actors[c].settle_errors(Some(&mut rng)).await.map_err(at)?;
                }
            }
        }

        // The end: faults off, everyone online, sync until nothing changes.
        for p in &proxies {
            p.set_plan(FaultPlan::none());
            p.set_offline(false);
        }
        let rounds = match mode {
            Mode::Calls => sync_until_quiet(&actors, 12).await?,
            Mode::EngineOnly => {
                let rounds = engines_converge(&actors, &engines, server.addr).await?;
                for engine in engines {
                    engine.stop().await.map_err(|e| format!("stop: {e}"))?;
                }
                rounds
            }
        };
        let mut client_rows = Vec::new();
        for a in &actors {
            let report = a.store.check_integrity().await.map_err(|e| e.to_string())?;
            if !report.is_ok() {
                return Err(format!("client {}: integrity: {:?}", a.index, report.problems));
            }
            client_rows.push((a.index, a.rows().await?));
        }
        let server_rows = oracle::server_rows(server.addr).await?;
        let verdict = oracle::check(&log.snapshot(), &journal.snapshot(), &server_rows, &client_rows)?;
        let mut stats = FaultStats::default();
        for p in &proxies {
            stats.merge(&p.stats());
        }
        Ok(Outcome { stats, verdict, rounds })
    })
}

/// A client's engine: quick debounce, polls and backoffs, so a seed runs in a second.
fn start_engine(actor: &Actor) -> Result<SyncEngine, String> {
    actor
        .client
        .engine()
        .pull(sync_runtime::Query::<sync_tests::TodoItem>::new(), "all")
        .push_debounce(Duration::from_millis(5))
        .poll_interval(Duration::from_millis(100))
        .backoff(Duration::from_millis(10), Duration::from_millis(200))
        .start()
        .map_err(|e| format!("client {}: engine: {e}", actor.index))
}

/// With faults off and no sync call: settles errors as an app does when they appear,
/// until every client holds the server's rows with nothing queued, twice in a row a
/// polling interval apart. Returns the number of checks it took.
async fn engines_converge(
    actors: &[Actor],
    engines: &[SyncEngine],
    server: std::net::SocketAddr,
) -> Result<u32, String> {
    let started = Instant::now();
    let mut quiet_checks = 0;
    let mut checks = 0;
    loop {
        checks += 1;
        let mut settled = 0;
        for a in actors {
            settled += a.settle_errors(None).await?;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        let server_rows: Vec<sync_tests::workload::RowState> = oracle::server_rows(server)
            .await?
            .into_iter()
            .filter(|r| !r.deleted)
            .map(|r| sync_tests::workload::RowState {
                id: r.id,
                text: r.text,
                complete: r.complete,
                version: Some(r.version),
            })
            .collect();
        let mut quiet = settled == 0;
        for (a, engine) in actors.iter().zip(engines) {
            let status = engine.status();
            let left = a.store.pending_count().await.map_err(|e| e.to_string())?
                + a.store.error_count().await.map_err(|e| e.to_string())?;
            if left > 0 || status.uploading || status.downloading || a.rows().await? != server_rows {
                quiet = false;
            }
        }
        quiet_checks = if quiet { quiet_checks + 1 } else { 0 };
        if quiet_checks >= 2 {
            return Ok(checks);
        }
        if started.elapsed() > ENGINE_CONVERGE_WITHIN {
            let mut state = String::new();
            for (a, engine) in actors.iter().zip(engines) {
                let ops = a.store.pending_ops().await.map_err(|e| e.to_string())?;
                state.push_str(&format!("\nclient {}: status {:?}\n  ops {ops:?}", a.index, engine.status()));
            }
            return Err(format!("the engines did not converge within {ENGINE_CONVERGE_WITHIN:?}:{state}"));
        }
    }
}

#[test]
fn random_clients_through_faults_converge_and_lose_nothing() {
    let seeds: Vec<u64> = match env("SYNC_SEED") {
        Some(seed) => vec![seed],
        None => (1..=env("SYNC_RELIABILITY_SEEDS").unwrap_or(8)).collect(),
    };
    run_seeds(&seeds, Mode::Calls);
}

#[test]
fn engine_only_clients_through_faults_converge_and_lose_nothing() {
    // `SYNC_TRACE=sync_runtime=trace` logs what the library does, on stderr.
    if let Ok(filter) = std::env::var("SYNC_TRACE") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .with_thread_names(true)
            .with_ansi(false)
            .try_init();
    }
    let seeds: Vec<u64> = match env("SYNC_SEED") {
        Some(seed) => vec![seed],
        None => (1..=env("SYNC_ENGINE_SEEDS").unwrap_or(4)).collect(),
    };
    run_seeds(&seeds, Mode::EngineOnly);
}

fn run_seeds(seeds: &[u64], mode: Mode) {
    let steps = env("SYNC_STEPS").unwrap_or(300);
    let clients = env("SYNC_CLIENTS").unwrap_or(4).max(1) as usize;
    let started = Instant::now();
    let mut total = FaultStats::default();
    let mut conflicts = 0;
    let mut writes = 0;
    for &seed in seeds {
        let t = Instant::now();
        match run_seed(seed, steps, clients, mode) {
            Ok(outcome) => {
                let v = &outcome.verdict;
                eprintln!(
                    "{mode:?} seed {seed}: ok in {:.1?}: {} local writes, {} accepted by the server, {} conflicts, {} errors settled, {} live rows, quiet after {} rounds; faults {:?}",
                    t.elapsed(),
                    v.writes,
                    v.applied_writes,
                    v.conflicts,
                    v.settled,
                    v.live_rows,
                    outcome.rounds,
                    outcome.stats.counts
                );
                total.merge(&outcome.stats);
                conflicts += v.conflicts;
                writes += v.writes;
            }
            Err(e) => panic!(
                "{mode:?} seed {seed} failed: {e}\n\nreplay: SYNC_SEED={seed} SYNC_STEPS={steps} SYNC_CLIENTS={clients} cargo test -p sync-tests --test reliability_sync"
            ),
        }
    }
    eprintln!(
        "{mode:?}: {} seed(s) x {steps} steps x {clients} clients in {:.1?}: {writes} writes, {conflicts} conflicts; faults {:?}",
        seeds.len(),
        started.elapsed(),
        total.counts
    );
    // The run means something only if every kind of fault happened.
    if seeds.len() >= 3 && mode == Mode::Calls {
        for name in [
            "refuse",
            "reset-request",
            "reset-response",
            "drop-after-applied",
            "504-after-applied",
            "500",
            "503",
            "delay",
        ] {
            assert!(total.get(name) > 0, "no `{name}` fault was injected: {:?}", total.counts);
        }
        assert!(conflicts > 0, "no conflict happened");
    }
}
