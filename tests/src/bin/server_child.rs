//! A `sync-server` for `TodoItem` in a process of its own, for tests that kill it
//! (SIGKILL) and start it again: the sync engine's tests.
//!
//! Usage: `server_child <database-url> <addr> [<max-body-bytes>|no-feed]...`. Prints
//! `listening http://ADDR` once it serves, then serves until killed. `no-feed` turns
//! the change feed off (a server of the Azure family has none).

use std::io::Write;

use sync_server::Server;
use sync_tests::TodoItem;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(database), Some(addr)) = (args.first(), args.get(1)) else {
        eprintln!("usage: server_child <database-url> <addr> [<max-body-bytes>]");
        std::process::exit(2);
    };
    let no_feed = args[2..].iter().any(|a| a == "no-feed");
    let max_body = args[2..].iter().find(|a| *a != "no-feed").map(|b| b.parse::<usize>().expect("a number of bytes"));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let mut builder = Server::builder().table::<TodoItem>().database(database.parse().expect("a database URL"));
        if let Some(bytes) = max_body {
            builder = builder.max_body(bytes);
        }
        if no_feed {
            builder = builder.feed(false);
        }
        let server = builder.build().await.expect("the server starts");
        // The port may still be held for a moment by the process killed before.
        let listener = loop {
            match tokio::net::TcpListener::bind(addr.as_str()).await {
                Ok(listener) => break listener,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot listen on {addr}: {e}"),
            }
        };
        let handle = server.spawn(listener).expect("the server serves");
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening {}", handle.url()).and_then(|()| out.flush()).expect("stdout");
        drop(out);
        std::future::pending::<()>().await;
    });
}
