//! `cargo bench -p sync-bench --bench sync [-- --quick] [-- --json] [-- <name>...]`
//!
//! Runs every scenario of issue 7 alternately through our API and the raw baseline and
//! prints one line per scenario:
//! `<scenario>: ours <median> | raw <median> | ratio <raw/ours> | target >= <x>`.
//! See the crate docs of `sync_bench` for what each side does.

use std::process::ExitCode;
use std::time::Instant;

use sync_bench::measure::Figure;
use sync_bench::remote::{Db, PgSchema};
use sync_bench::writers::{self, ServerDb};
use sync_bench::{Sizes, engine, feed, live, local, remote};

/// The PostgreSQL database of the `pull_pg`, `push_pg` and `writers_*` scenarios (each
/// in a schema of its own, dropped afterwards); `SYNC_TEST_POSTGRES_URL` is used when it
/// is unset.
const POSTGRES_URL_VAR: &str = "SYNC_BENCH_POSTGRES_URL";

type Res<T> = Result<T, Box<dyn std::error::Error>>;

struct Args {
    quick: bool,
    json: bool,
    filters: Vec<String>,
}

fn args() -> Args {
    let mut args = Args { quick: false, json: false, filters: Vec::new() };
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quick" => args.quick = true,
            "--json" => args.json = true,
            // What `cargo bench` passes to every bench binary.
            "--bench" => {}
            other if other.starts_with('-') => eprintln!("ignoring unknown option `{other}`"),
            other => args.filters.push(other.to_owned()),
        }
    }
    args
}

fn main() -> ExitCode {
    // One pull in a fresh process, for its peak RSS (see `remote::child_pull`).
    let argv: Vec<String> = std::env::args().collect();
    if let [_, flag, side, url, rows] = argv.as_slice() {
        if flag == remote::CHILD_PULL {
            let rows = rows.parse().unwrap_or(0);
            return match remote::child_pull(side, url, rows) {
                Ok(kib) => {
                    println!("{kib}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("child pull failed: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    }
    // The other process of `live_latency_process` (see `live::child_writer`).
    if let Ok(path) = std::env::var(live::CHILD_WRITER_VAR) {
        return match live::child_writer(&path) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("child writer failed: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let args = args();
    match run(&args) {
        Ok(figures) => {
            if args.json {
                let all: Vec<_> = figures.iter().map(Figure::json).collect();
                println!("{}", serde_json::Value::Array(all));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Res<Vec<Figure>> {
    let sizes = if args.quick { Sizes::QUICK } else { Sizes::FULL };
    let wanted = |name: &str| args.filters.is_empty() || args.filters.iter().any(|f| name.contains(f.as_str()));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let r = sizes.rounds;
    let started = Instant::now();
    if !args.json {
        eprintln!(
            "sync-bench ({} run, {r} or {} rounds after a warm-up, files in {})",
            if args.quick { "quick" } else { "full" },
            sizes.short_rounds,
            d.display()
        );
    }

    let mut figures = Vec::new();
    let show = |figures: &mut Vec<Figure>, f: Figure| {
        if !args.json {
            println!("{}", f.line());
        }
        figures.push(f);
    };
    if wanted("insert_one") {
        show(&mut figures, local::insert_one(&rt, d, r, sizes.insert_one)?);
    }
    if wanted("insert_batch") {
        show(&mut figures, local::insert_batch(&rt, d, r, sizes.insert_batch)?);
    }
    if wanted("query") {
        show(&mut figures, local::query(&rt, d, sizes.short_rounds, sizes.query_rows, sizes.query_reps)?);
    }
    if wanted("query_during_pull") {
        let db = Db::Sqlite(d.join("query-during-pull-server.db"));
        show(&mut figures, remote::query_during_pull(&rt, d, sizes.pull_rows, 4, &db)?);
    }
    if wanted("idle") {
        show(&mut figures, local::idle(&rt, d, sizes.idle_secs)?);
    }
    if wanted("live_latency") {
        show(&mut figures, live::latency(d, sizes.live_writes)?);
    }
    if wanted("live_latency_process") {
        show(&mut figures, live::latency_across_processes(d, sizes.live_writes)?);
    }
    if wanted("live_unrelated_write") {
        show(&mut figures, live::unrelated_write(d, r, sizes.live_round_writes, 100)?);
    }
    if wanted("live_requery") {
        show(&mut figures, live::requery(d, r, sizes.live_round_writes, sizes.live_rows, 10)?);
    }
    if wanted("live_idle") {
        show(&mut figures, live::idle(d, sizes.idle_secs, 10)?);
    }
    if wanted("engine_latency_poll") {
        let db = Db::Sqlite(d.join("engine-poll-server.db"));
        show(
            &mut figures,
            engine::latency(&rt, d, sizes.live_writes, engine::Via::Polling, &db, "engine_latency_poll")?,
        );
    }
    if wanted("engine_latency_feed") {
        let db = Db::Sqlite(d.join("engine-feed-server.db"));
        show(&mut figures, engine::latency(&rt, d, sizes.live_writes, engine::Via::Feed, &db, "engine_latency_feed")?);
    }
    if wanted("engine_idle") {
        show(&mut figures, engine::idle(&rt, d, sizes.idle_secs)?);
    }
    if wanted("pull") {
        let db = Db::Sqlite(d.join("pull-server.db"));
        show(&mut figures, remote::pull(&rt, d, r, sizes.pull_rows, "pull", Some(0.7), &db)?);
        if let Some(rows) = sizes.pull_large_rows {
            let name = format!("pull_{}k", rows / 1000);
            let db = Db::Sqlite(d.join(format!("{name}-server.db")));
            show(&mut figures, remote::pull(&rt, d, 1, rows, &name, Some(0.7), &db)?);
        }
    }
    // The same two scenarios with the server on PostgreSQL, beside the SQLite ones.
    let postgres = std::env::var(POSTGRES_URL_VAR).or_else(|_| std::env::var("SYNC_TEST_POSTGRES_URL")).ok();
    for (scenario, tag) in [("pull_pg", "pull"), ("push_pg", "push")] {
        if !wanted(scenario) {
            continue;
        }
        let Some(base) = &postgres else {
            eprintln!("{scenario}: skipped (set {POSTGRES_URL_VAR} to a PostgreSQL URL to run it)");
            continue;
        };
        let schema = PgSchema::create(&rt, base, tag)?;
        let figure = match tag {
            "pull" => remote::pull(&rt, d, r, sizes.pull_rows, scenario, Some(0.7), &schema.db()),
            _ => remote::push(&rt, d, r, sizes.push_ops, scenario, &schema.db()),
        };
        schema.drop_schema(&rt)?;
        show(&mut figures, figure?);
    }
    if wanted("push") {
        show(&mut figures, remote::push(&rt, d, r, sizes.push_ops, "push", &Db::Sqlite(d.join("push-server.db")))?);
    }
    // Through the feed with A and B on two server instances on one PostgreSQL.
    if wanted("engine_latency_feed_pg") {
        match &postgres {
            Some(base) => {
                let schema = PgSchema::create(&rt, base, "engine_feed")?;
                let figure = engine::latency(
                    &rt,
                    d,
                    sizes.live_writes,
                    engine::Via::Feed,
                    &schema.db(),
                    "engine_latency_feed_pg",
                );
                schema.drop_schema(&rt)?;
                show(&mut figures, figure?);
            }
            None => eprintln!("engine_latency_feed_pg: skipped (set {POSTGRES_URL_VAR} to a PostgreSQL URL to run it)"),
        }
    }
    // Concurrent HTTP writers vs the same statements sent raw to PostgreSQL: the server
    // on PostgreSQL, then on SQLite for comparison.
    for (scenario, server_db) in [("writers_pg", ServerDb::Postgres), ("writers_sqlite", ServerDb::Sqlite(d))] {
        if !wanted(scenario) {
            continue;
        }
        let Some(base) = &postgres else {
            eprintln!("{scenario}: skipped (set {POSTGRES_URL_VAR} to a PostgreSQL URL to run it)");
            continue;
        };
        for f in writers::writers(&rt, r, sizes.writers_ops, base, server_db)? {
            show(&mut figures, f);
        }
    }
    if let Some(line) = writers::summary(&figures).filter(|_| !args.json) {
        println!("{line}");
    }
    if wanted("feed_subscribers") {
        show(&mut figures, feed::subscribers(&rt, d, r, sizes.feed_subscribers, sizes.feed_writes)?);
    }
    if wanted("queue_read") {
        let (rows, ops, calls) = (sizes.queue_rows, sizes.queue_ops, sizes.queue_calls);
        for f in local::queue_read(&rt, d, sizes.short_rounds, rows, ops, calls)? {
            show(&mut figures, f);
        }
    }
    if !args.json {
        let missed: Vec<&str> = figures.iter().filter(|f| !f.met()).map(|f| f.scenario.as_str()).collect();
        eprintln!(
            "done in {:.1} s; {}",
            started.elapsed().as_secs_f64(),
            if missed.is_empty() { "every target met".to_owned() } else { format!("missed: {}", missed.join(", ")) }
        );
    }
    Ok(figures)
}
