//! The child of the sync crash test (`tests/tests/reliability_crash.rs`): the randomized
//! sync workload of `sync_tests::workload` on a few client stores, pushing and pulling
//! through the parent's proxies, until it is killed. It reports on stdout, one line per
//! event, flushed before the event takes effect:
//!
//! - `B <json>` before a local write and `C` once it committed (`A` if it was refused
//!   because the item changed since it was read, then decided again);
//! - `E <json>` for a conflict decision, a merged item or an error settlement;
//! - `S <client> push|pull|idle` when a push or pull starts and ends;
//! - `P <client> push|pull <done> <finished>` for progress inside a push or pull;
//! - `X <message>` when the workload finds something wrong (then it exits with 3).
//!
//! Usage: `sync_child <dir> <v2|v3> <seed> <round> <url>[,<url>...]`

use std::io::Write;

use sync_runtime::{ProtocolVersion, Store};
use sync_tests::Rng;
use sync_tests::workload::{Actor, ClientConfig, EventLog, pick_id};

/// Steps of one child run before it stops on its own (the parent kills it long before).
const MAX_STEPS: u64 = 100_000;

fn say(line: &str) {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    // A closed pipe means the parent is gone: stop.
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
}

async fn run(dir: &str, protocol: ProtocolVersion, seed: u64, round: u64, urls: &[String]) -> Result<(), String> {
    let log = EventLog::with_echo(say);
    let mut actors = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let store = Store::open(format!("{dir}/c{i}.db")).await.map_err(|e| format!("open store {i}: {e}"))?;
        let config = ClientConfig { index: i, url: url.clone(), protocol, prefix: format!("r{round}."), page_size: 3 };
        actors.push(Actor::open(store, &config, &log).await.map_err(|e| e.to_string())?);
    }
    let mut rng = Rng::new(seed ^ round.wrapping_mul(0x9E37_79B9));
    let clients = actors.len() as u64;
    for step in 0..MAX_STEPS {
        let c = rng.below(clients) as usize;
        let roll = rng.below(100);
        let actor = &mut actors[c];
        match roll {
            0..50 => {
                let id = pick_id(&mut rng, round * 20 + step / 4);
                actor.write(&mut rng, &id).await?;
            }
            50..65 if actor.online => {
                say(&format!("S {c} push"));
                actor.push().await?;
                say(&format!("S {c} idle"));
            }
            65..80 if actor.online => {
                say(&format!("S {c} pull"));
                actor.pull().await?;
                say(&format!("S {c} idle"));
            }
            80..86 => actor.online = !actor.online,
            86..100 => {
                actor.settle_errors(Some(&mut rng)).await?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [dir, protocol, seed, round, urls] => {
            let protocol = match protocol.as_str() {
                "v2" => Some(ProtocolVersion::V2),
                "v3" => Some(ProtocolVersion::V3),
                _ => None,
            };
            match (protocol, seed.parse::<u64>(), round.parse::<u64>()) {
                (Some(p), Ok(s), Ok(r)) => Some((dir.clone(), p, s, r, urls.split(',').map(str::to_owned).collect())),
                _ => None,
            }
        }
        _ => None,
    };
    let Some((dir, protocol, seed, round, urls)) = parsed else {
        eprintln!("usage: sync_child <dir> <v2|v3> <seed> <round> <url>[,<url>...]");
        std::process::exit(2);
    };
    let urls: Vec<String> = urls;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    if let Err(e) = rt.block_on(run(&dir, protocol, seed, round, &urls)) {
        say(&format!("X {}", e.replace('\n', " | ")));
        std::process::exit(3);
    }
}
