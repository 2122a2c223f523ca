//! Crash-restart test of sync (DESIGN.md section 11): the randomized workload of
//! `reliability_sync` runs in a child process (`sync_child`) on three client stores,
//! pushing and pulling through fault-injecting proxies, and is killed with SIGKILL at
//! random points: during local writes, in the middle of pushes and in the middle of
//! pulls. After every kill each store must open and pass its integrity check, and a
//! write in progress must have committed whole or not at all. After the last kill the
//! test reopens the stores, syncs with faults off until quiet, and applies the same
//! judge as the randomized test (`sync_tests::oracle`).
//!
//! Knobs: `SYNC_RELIABILITY_CRASH_SEED` (default 0xC0FFEE), `SYNC_RELIABILITY_KILLS` (kills, default 24).
//! A failure prints the seed; replay with
//! `SYNC_RELIABILITY_CRASH_SEED=<seed> cargo test -p sync-tests --test reliability_crash`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TestServer;
use sync_runtime::{ProtocolVersion, Store};
use sync_tests::proxy::{FaultPlan, Journal, Proxy};
use sync_tests::workload::{Actor, ClientConfig, Event, EventLog, Kind, sync_until_quiet};
use sync_tests::{Rng, TodoItem, oracle};

const CLIENTS: usize = 3;

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Where a child was when it died, by its last `S` line and the kill's target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Point {
    Write,
    Push,
    Pull,
    Other,
}

/// What one child run told the parent.
struct Run {
    events: Vec<Event>,
    /// A write begun (`B`) but not reported committed.
    uncertain: Option<Event>,
    point: Point,
    lines: usize,
}

fn parse_run(lines: &[String], round: u64) -> Result<Run, String> {
    let mut events = Vec::new();
    let mut begun: Option<Event> = None;
    let mut point = Point::Other;
    let mut uncertain = None;
    for (n, line) in lines.iter().enumerate() {
        let last = n + 1 == lines.len();
        let (tag, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match tag {
            "B" => {
                let event: Event =
                    serde_json::from_str(rest).map_err(|e| format!("round {round}: bad line {line:?}: {e}"))?;
                point = Point::Write;
                begun = Some(event);
            }
            "C" => {
                events.push(begun.take().ok_or_else(|| format!("round {round}: a commit without a begin"))?);
                point = Point::Other;
            }
            // A write refused (the item changed since the app read it): nothing to keep.
            "A" => {
                begun = None;
                point = Point::Other;
            }
            "E" => {
                let event: Event =
                    serde_json::from_str(rest).map_err(|e| format!("round {round}: bad line {line:?}: {e}"))?;
                // A merged item printed last may not have been stored: decided below.
                if last && matches!(event, Event::Write { merged: true, .. }) {
                    uncertain = Some(event);
                } else {
                    events.push(event);
                }
            }
            "S" => {
                point = match rest.split(' ').nth(1) {
                    Some("push") => Point::Push,
                    Some("pull") => Point::Pull,
                    _ => Point::Other,
                };
            }
            "P" => {}
            "X" => return Err(format!("round {round}: the child found a problem: {rest}")),
            _ if last => {} // a line cut by the kill
            _ => return Err(format!("round {round}: unexpected child output {line:?}")),
        }
    }
    if let Some(b) = begun {
        uncertain = Some(b);
    }
    Ok(Run { events, uncertain, point, lines: lines.len() })
}

/// Whether a write the child began had committed, judged from the store it wrote to.
async fn committed(dir: &std::path::Path, event: &Event) -> Result<bool, String> {
    let Event::Write { client, id, kind, text, .. } = event else { return Ok(false) };
    let store = Store::open(dir.join(format!("c{client}.db"))).await.map_err(|e| e.to_string())?;
    let row = store.table::<TodoItem>().await.map_err(|e| e.to_string())?.get(id).await.map_err(|e| e.to_string())?;
    store.close().await.map_err(|e| e.to_string())?;
    Ok(match kind {
        Kind::Delete => row.is_none(),
        _ => row.is_some_and(|r| Some(&r.text) == text.as_ref()),
    })
}

fn run(seed: u64, kills: u64) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let clock = sync_server::ManualClock::new(time::macros::datetime!(2026-05-01 12:00:00.000 UTC));
    let server = TestServer::start_with_clock(&dir.path().join("server.db"), clock);
    let journal = Journal::new();
    let proxies: Vec<Proxy> = (0..CLIENTS)
        .map(|i| {
            let p =
                Proxy::start_with(server.addr, seed.wrapping_add(i as u64 * 7919), &format!("c{i}"), journal.clone());
            p.set_plan(FaultPlan { delay: 120, max_delay_ms: 8, ..FaultPlan::chaos() });
            p
        })
        .collect();
    let urls: Vec<String> = proxies.iter().map(Proxy::url).collect();
    let protocol = if seed % 2 == 0 { ProtocolVersion::V2 } else { ProtocolVersion::V3 };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let mut rng = Rng::new(seed);
    let mut events: Vec<Event> = Vec::new();
    let mut points = std::collections::HashMap::<Point, u64>::new();
    let mut uncertain_committed = 0;

    for round in 0..kills {
        let target = [Point::Write, Point::Push, Point::Pull][(round % 3) as usize];
        let after = 1 + rng.below(40);
        let mut child = Command::new(env!("CARGO_BIN_EXE_sync_child"))
            .arg(dir.path())
            .arg(if protocol == ProtocolVersion::V2 { "v2" } else { "v3" })
            .arg(seed.to_string())
            .arg(round.to_string())
            .arg(urls.join(","))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("start the child: {e}"))?;
        let mut reader = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
        let mut lines = Vec::new();
        let mut seen = 0;
        for line in reader.by_ref() {
            let Ok(line) = line else { break };
            let hit = match target {
                Point::Write => line.starts_with("B "),
                Point::Push => line.contains(" push ") && line.starts_with("P "),
                Point::Pull => line.contains(" pull ") && line.starts_with("P "),
                Point::Other => false,
            };
            let stop = line.starts_with("X ");
            lines.push(line);
            if hit {
                seen += 1;
            }
            if stop || seen >= after || lines.len() > 3000 {
                break;
            }
        }
        let pause = rng.below(3);
        if pause > 0 {
            std::thread::sleep(Duration::from_micros(pause * 400));
        }
        let _ = child.kill();
        let status = child.wait().map_err(|e| e.to_string())?;
        lines.extend(reader.map_while(Result::ok));
        let parsed = parse_run(&lines, round)?;
        if status.code().is_some() {
            return Err(format!("round {round}: the child exited on its own ({status}) after {} lines", parsed.lines));
        }
        *points.entry(parsed.point).or_default() += 1;
        events.extend(parsed.events);
        rt.block_on(async {
            if let Some(event) = &parsed.uncertain {
                if committed(dir.path(), event).await? {
                    uncertain_committed += 1;
                    events.push(event.clone());
                }
            }
            for i in 0..CLIENTS {
                let store = Store::open(dir.path().join(format!("c{i}.db")))
                    .await
                    .map_err(|e| format!("round {round}: reopen store {i}: {e}"))?;
                let report = store.check_integrity().await.map_err(|e| e.to_string())?;
                if !report.is_ok() {
                    return Err(format!("round {round}: store {i} integrity: {:?}", report.problems));
                }
                store.close().await.map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(())
        })?;
    }

    // Restart for good: faults off, sync until quiet, judge.
    for p in &proxies {
        p.set_plan(FaultPlan::none());
    }
    rt.block_on(async {
        let log = EventLog::new();
        log.extend(events);
        let mut actors = Vec::new();
        for (i, url) in urls.iter().enumerate() {
            let store = Store::open(dir.path().join(format!("c{i}.db"))).await.map_err(|e| e.to_string())?;
            let config = ClientConfig { index: i, url: url.clone(), protocol, prefix: "final.".into(), page_size: 3 };
            actors.push(Actor::open(store, &config, &log).await.map_err(|e| e.to_string())?);
        }
        let rounds = sync_until_quiet(&actors, 12).await?;
        let mut client_rows = Vec::new();
        for a in &actors {
            client_rows.push((a.index, a.rows().await?));
        }
        let server_rows = oracle::server_rows(server.addr).await?;
        let v = oracle::check(&log.snapshot(), &journal.snapshot(), &server_rows, &client_rows)?;
        let kinds = [Point::Write, Point::Push, Point::Pull].map(|p| points.get(&p).copied().unwrap_or(0));
        if kinds[1] == 0 || kinds[2] == 0 {
            return Err(format!("no kill landed inside a push or a pull: {points:?}"));
        }
        Ok(format!(
            "{kills} kills (during writes {}, pushes {}, pulls {}, elsewhere {}), {uncertain_committed} in-progress writes had committed; {} writes, {} accepted, {} conflicts, {} settled, {} live rows; quiet after {rounds} rounds",
            kinds[0],
            kinds[1],
            kinds[2],
            points.get(&Point::Other).copied().unwrap_or(0),
            v.writes,
            v.applied_writes,
            v.conflicts,
            v.settled,
            v.live_rows
        ))
    })
}

#[test]
fn sync_killed_at_random_points_restarts_and_converges() {
    let seed = env("SYNC_RELIABILITY_CRASH_SEED").unwrap_or(0xC0FFEE);
    let kills = env("SYNC_RELIABILITY_KILLS").unwrap_or(24);
    let started = Instant::now();
    match run(seed, kills) {
        Ok(summary) => eprintln!("sync crash test, seed {seed}: {summary} in {:.1?}", started.elapsed()),
        Err(e) => panic!(
            "sync crash test failed, seed {seed}: {e}\n\nreplay: SYNC_RELIABILITY_CRASH_SEED={seed} SYNC_RELIABILITY_KILLS={kills} cargo test -p sync-tests --test reliability_crash"
        ),
    }
}
