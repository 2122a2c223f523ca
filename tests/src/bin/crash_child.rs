//! The child of the queue crash test: random local inserts, updates and deletes on a
//! store file, one per transaction, reporting each on stdout before (`B`) and after it
//! commits (`C`), until it is killed.
//!
//! Usage: `crash_child <db-file> <seed>`

use std::io::Write;

use sync_runtime::Store;
use sync_tests::{Rng, TodoItem};

/// How many distinct ids the child writes to.
const IDS: u64 = 24;

async fn run(path: &str, seed: u64, out: &mut impl Write) -> sync_runtime::Result<()> {
    let store = Store::open(path).await?;
    let table = store.table::<TodoItem>().await?;
    let mut rng = Rng::new(seed);
    let mut n = 0u64;
    loop {
        let id = format!("item-{}", rng.below(IDS));
        let exists = table.get(&id).await?.is_some();
        n += 1;
        let text = format!("{seed}-{n}");
        let (kind, result) = if !exists {
            report(out, &format!("B {n} insert {id} {text}"));
            ("insert", table.insert(TodoItem::new(&id, &text)).await.map(drop))
        } else if rng.below(3) == 0 {
            report(out, &format!("B {n} delete {id} -"));
            ("delete", table.delete(&id).await)
        } else {
            report(out, &format!("B {n} update {id} {text}"));
            ("update", table.update(&TodoItem::new(&id, &text)).await)
        };
        result?;
        report(out, &format!("C {n} {kind}"));
    }
}

fn report(out: &mut impl Write, line: &str) {
    // A failed write to a closed pipe means the parent is gone: stop.
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(path), Some(seed)) = (args.next(), args.next().and_then(|s| s.parse::<u64>().ok())) else {
        eprintln!("usage: crash_child <db-file> <seed>");
        std::process::exit(2);
    };
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("tokio runtime");
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if let Err(e) = rt.block_on(run(&path, seed, &mut out)) {
        let _ = writeln!(std::io::stderr(), "crash_child: {e}");
        std::process::exit(1);
    }
}
