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

mod common;

use std::time::Instant;

use common::TestServer;
use sync_runtime::{ProtocolVersion, Store};
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

fn run_seed(seed: u64, steps: u64, clients: usize) -> Result<Outcome, String> {
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
        let mut rng = Rng::new(seed);
        for step in 0..steps {
            let c = rng.below(clients as u64) as usize;
            let roll = rng.below(100);
            let at = |e: String| format!("step {step}: {e}");
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
        let rounds = sync_until_quiet(&actors, 12).await?;
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

#[test]
fn random_clients_through_faults_converge_and_lose_nothing() {
    let steps = env("SYNC_STEPS").unwrap_or(300);
    let clients = env("SYNC_CLIENTS").unwrap_or(4).max(1) as usize;
    let seeds: Vec<u64> = match env("SYNC_SEED") {
        Some(seed) => vec![seed],
        None => (1..=env("SYNC_RELIABILITY_SEEDS").unwrap_or(8)).collect(),
    };
    let started = Instant::now();
    let mut total = FaultStats::default();
    let mut conflicts = 0;
    let mut writes = 0;
    for &seed in &seeds {
        let t = Instant::now();
        match run_seed(seed, steps, clients) {
            Ok(outcome) => {
                let v = &outcome.verdict;
                eprintln!(
                    "seed {seed}: ok in {:.1?}: {} local writes, {} accepted by the server, {} conflicts, {} errors settled, {} live rows, quiet after {} rounds; faults {:?}",
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
                "seed {seed} failed: {e}\n\nreplay: SYNC_SEED={seed} SYNC_STEPS={steps} SYNC_CLIENTS={clients} cargo test -p sync-tests --test reliability_sync"
            ),
        }
    }
    eprintln!(
        "{} seed(s) x {steps} steps x {clients} clients in {:.1?}: {writes} writes, {conflicts} conflicts; faults {:?}",
        seeds.len(),
        started.elapsed(),
        total.counts
    );
    // The run means something only if every kind of fault happened.
    if seeds.len() >= 3 {
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
