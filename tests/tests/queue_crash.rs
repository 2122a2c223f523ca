//! Crash test of the local write path: a child process performs random inserts,
//! updates and deletes and is killed with SIGKILL at random moments. After each kill
//! the store must open, pass its integrity check, and hold every write the child
//! reported as committed, with its queue operation.
//!
//! `SYNC_CRASH_KILLS=500 cargo nextest run -p sync-tests --test queue_crash` runs more.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use sync_runtime::{OpKind, Store};
use sync_tests::{Rng, TodoItem};

/// What the model knows of one item: its text, or absent.
type Model = BTreeMap<String, Option<String>>;

fn apply(model: &mut Model, kind: &str, id: &str, text: &str) {
    match kind {
        "insert" | "update" => model.insert(id.to_owned(), Some(text.to_owned())),
        "delete" => model.insert(id.to_owned(), None),
        other => panic!("unknown kind {other}"),
    };
}

async fn actual(store: &Store) -> Model {
    let table = store.table::<TodoItem>().await.unwrap();
    table.fetch(&sync_runtime::Query::new()).await.unwrap().into_iter().map(|i| (i.id, Some(i.text))).collect()
}

#[test]
fn killed_writers_leave_a_consistent_store_with_every_committed_write() {
    let kills: u64 = std::env::var("SYNC_CRASH_KILLS").ok().and_then(|s| s.parse().ok()).unwrap_or(50);
    let seed: u64 = std::env::var("SYNC_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5EED);
    eprintln!("queue crash test: {kills} kills, seed {seed} (SYNC_CRASH_SEED to replay)");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let mut rng = Rng::new(seed);
    let mut model = Model::new();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut committed_total = 0u64;

    for round in 0..kills {
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash_child"))
            .arg(&path)
            .arg((seed ^ round.wrapping_mul(0x1000_0001)).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the child");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let stop_after = 1 + rng.below(120);
        let mut seen = Vec::new();
        for _ in 0..stop_after {
            match lines.next() {
                Some(Ok(line)) => seen.push(line),
                _ => break,
            }
        }
        child.kill().expect("SIGKILL the child");
        let status = child.wait().unwrap();
        assert!(status.code().is_none(), "round {round}: the child exited on its own ({status}); seed {seed}");
        // Lines written before the kill may still sit in the pipe.
        seen.extend(lines.map_while(Result::ok));

        let mut begun: Option<(String, String, String)> = None;
        for line in &seen {
            let parts: Vec<&str> = line.splitn(5, ' ').collect();
            match parts.as_slice() {
                ["B", _, kind, id, text] => begun = Some(((*kind).into(), (*id).into(), (*text).into())),
                ["C", _, _] => {
                    let (kind, id, text) = begun.take().expect("a commit follows its begin");
                    apply(&mut model, &kind, &id, &text);
                    committed_total += 1;
                }
                _ => panic!("round {round}: unexpected child output {line:?}"),
            }
        }

        rt.block_on(async {
            let store = Store::open(&path).await.unwrap_or_else(|e| panic!("round {round}: reopen: {e}; seed {seed}"));
            let report = store.check_integrity().await.unwrap();
            assert!(report.is_ok(), "round {round}: integrity: {:?}; seed {seed}", report.problems);
            let now = actual(&store).await;
            let mut expected: Model =
                model.iter().filter(|(_, v)| v.is_some()).map(|(k, v)| (k.clone(), v.clone())).collect();
            if now != expected {
                // The one write in progress at the kill may have committed.
                let (kind, id, text) = begun
                    .clone()
                    .unwrap_or_else(|| panic!("round {round}: state differs with no write in progress; seed {seed}"));
                let mut alt = model.clone();
                apply(&mut alt, &kind, &id, &text);
                expected = alt.into_iter().filter(|(_, v)| v.is_some()).collect();
                assert_eq!(now, expected, "round {round}: the store lost a committed write; seed {seed}");
            }
            // Nothing was ever pushed, so every present item has exactly one queued insert
            // and every absent item none (an insert then a delete vanish together).
            let ops = store.pending_ops().await.unwrap();
            let mut queued: BTreeMap<String, Vec<OpKind>> = BTreeMap::new();
            for op in &ops {
                queued.entry(op.item_id.clone()).or_default().push(op.kind);
            }
            for id in now.keys() {
                assert_eq!(
                    queued.get(id).map(Vec::as_slice),
                    Some(&[OpKind::Insert][..]),
                    "round {round}: queue of {id}; seed {seed}"
                );
            }
            assert_eq!(queued.len(), now.len(), "round {round}: ops for absent items: {queued:?}; seed {seed}");
            model = now.into_iter().collect();
            store.close().await.unwrap();
        });
    }
    assert!(committed_total > kills, "the children committed too little to mean anything ({committed_total})");
    eprintln!("queue crash test: {committed_total} committed writes checked");
}
