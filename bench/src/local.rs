//! Local scenarios: the store against raw rusqlite on the same schema and pragmas.
//!
//! "Ours" is the public async API called as an app calls it (`table.insert(..).await` on
//! a tokio multi-thread runtime), so every call includes its trip to the store thread.
//! The raw side runs the same statements synchronously on one connection.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::params;
use sync_runtime::query::QuerySpec;
use sync_runtime::{Query, Store};
use tokio::runtime::Runtime;

use crate::measure::{Figure, alternate, alternate_chunked};
use crate::model::{self, Item, ItemSchema, LOCAL_COLUMNS, RAW_INSERT_OP, RAW_INSERT_ROW};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

fn fresh(dir: &Path, name: &str, round: usize) -> std::path::PathBuf {
    dir.join(format!("{name}-{round}.db"))
}

/// Removes a database file and its WAL companions (so old rounds do not fill the disk).
fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

/// Chunks per round of the short scenarios (see [`crate::measure::alternate_chunked`]).
const CHUNKS: usize = 20;

/// The items of chunk `chunk` of `chunks` of a round of `n` items.
fn chunk_of(items: &[Item], chunk: usize, chunks: usize) -> &[Item] {
    let per = items.len().div_ceil(chunks);
    let start = (chunk * per).min(items.len());
    &items[start..(start + per).min(items.len())]
}

/// `insert_one`: `n` single-item inserts through `Table::insert`, each its own
/// transaction with its queue operation, vs raw `BEGIN; INSERT row; INSERT op; COMMIT`.
/// Each round starts from an empty file.
pub fn insert_one(rt: &Runtime, dir: &Path, rounds: usize, n: usize) -> Res<Figure> {
    let mut ours: Option<(Store, sync_runtime::Table<Item>, Vec<Item>)> = None;
    let mut raw: Option<(rusqlite::Connection, Vec<Item>)> = None;
    let rows = alternate_chunked(
        rounds,
        CHUNKS,
        |round, chunk| {
            let path = fresh(dir, "insert-one-ours", round);
            if chunk == 0 {
                ours = Some(rt.block_on(async {
                    let store = Store::open(&path).await.expect("open the store");
                    let table = store.table::<Item>().await.expect("open the table");
                    (store, table, Item::many(&format!("o{round}"), n))
                }));
            }
            let (_, table, items) = ours.as_ref().expect("the round's store");
            let t = rt.block_on(async {
                let started = Instant::now();
                for item in chunk_of(items, chunk, CHUNKS) {
                    black_box(table.insert(item.clone()).await.expect("insert"));
                }
                started.elapsed()
            });
            if chunk == CHUNKS - 1 {
                let (store, _, _) = ours.take().expect("the round's store");
                rt.block_on(async {
                    assert_eq!(store.pending_count().await.expect("count"), n as u64);
                    store.close().await.expect("close");
                });
                remove_db(&path);
            }
            t
        },
        |round, chunk| {
            let path = fresh(dir, "insert-one-raw", round);
            if chunk == 0 {
                rt.block_on(model::create_store_file(&path)).expect("create the file");
                raw = Some((model::open_raw(&path).expect("open raw"), Item::many(&format!("r{round}"), n)));
            }
            let (conn, items) = raw.as_mut().expect("the round's connection");
            let started = Instant::now();
            for item in chunk_of(items, chunk, CHUNKS) {
                let item = item.clone();
                let tx = conn.transaction().expect("begin");
                tx.prepare_cached(RAW_INSERT_ROW)
                    .and_then(|mut s| s.execute(params![item.id, item.title, item.rank, item.done]))
                    .expect("insert row");
                tx.prepare_cached(RAW_INSERT_OP)
                    .and_then(|mut s| s.execute(params![item.id, model::now_text()]))
                    .expect("insert op");
                tx.commit().expect("commit");
                black_box(item);
            }
            let t = started.elapsed();
            if chunk == CHUNKS - 1 {
                drop(raw.take());
                remove_db(&path);
            }
            t
        },
    );
    Ok(Figure::new("insert_one", n as u64, "items", Some(0.8), rows))
}

/// `insert_batch`: `n` items through `Table::insert_many` (one transaction, each item
/// with its queue operation) vs raw: one transaction, two statements prepared once.
pub fn insert_batch(rt: &Runtime, dir: &Path, rounds: usize, n: usize) -> Res<Figure> {
    let rows = alternate(
        rounds,
        |round| {
            let path = fresh(dir, "insert-batch-ours", round);
            let items = Item::many(&format!("o{round}"), n);
            let t = rt.block_on(async {
                let store = Store::open(&path).await.expect("open the store");
                let table = store.table::<Item>().await.expect("open the table");
                let started = Instant::now();
                let stored = table.insert_many(items).await.expect("insert_many");
                let t = started.elapsed();
                assert_eq!(stored.len(), n);
                drop(stored);
                store.close().await.expect("close");
                t
            });
            remove_db(&path);
            t
        },
        |round| {
            let path = fresh(dir, "insert-batch-raw", round);
            rt.block_on(model::create_store_file(&path)).expect("create the file");
            let items = Item::many(&format!("r{round}"), n);
            let mut conn = model::open_raw(&path).expect("open raw");
            let started = Instant::now();
            let tx = conn.transaction().expect("begin");
            {
                let now = model::now_text();
                let mut row = tx.prepare(RAW_INSERT_ROW).expect("prepare row");
                let mut op = tx.prepare(RAW_INSERT_OP).expect("prepare op");
                for item in &items {
                    row.execute(params![item.id, item.title, item.rank, item.done]).expect("insert row");
                    op.execute(params![item.id, now]).expect("insert op");
                }
            }
            tx.commit().expect("commit");
            let t = started.elapsed();
            drop((conn, items));
            remove_db(&path);
            t
        },
    );
    Ok(Figure::new("insert_batch", n as u64, "items", Some(0.7), rows))
}

/// The query of the `query` scenario: open items below a rank, highest first, 100 of them.
pub fn open_items_below(rank: i64) -> Query<Item> {
    Query::new()
        .filter(Item::FIELDS.done.eq(false) & Item::FIELDS.rank.lt(rank))
        .order_by(Item::FIELDS.rank.desc())
        .limit(100)
}

/// `query`: `reps` typed filter + order + limit queries over `rows` rows vs the same
/// SQL prepared once with raw rusqlite, read into the same `Item`s. Both sides read the
/// same file.
pub fn query(rt: &Runtime, dir: &Path, rounds: usize, rows: usize, reps: usize) -> Res<Figure> {
    let path = dir.join("query.db");
    let store = rt.block_on(async {
        let store = Store::open(&path).await?;
        store.table::<Item>().await?;
        Ok::<_, sync_runtime::Error>(store)
    })?;
    let mut seed = model::open_raw(&path)?;
    model::seed_rows_unqueued(&mut seed, &Item::many("q", rows))?;
    drop(seed);
    let table = rt.block_on(store.table::<Item>())?;
    let n = rows as i64;
    let bound = |rep: usize| 200 + (rep as i64 * 7_919) % (n - 200).max(1);

    // The raw side runs exactly the SQL the store compiles for the query.
    let spec: QuerySpec = open_items_below(0).into_spec();
    let sql = sync_core::sql::select(&sync_core::sql::Sqlite, model::TABLE, &LOCAL_COLUMNS, &spec, &ItemSchema)?;
    let conn = model::open_raw(&path)?;
    let mut stmt = conn.prepare(&sql.sql)?;
    let (mut returned_ours, mut returned_raw) = (0usize, 0usize);
    let per = reps.div_ceil(CHUNKS);
    let chunk_reps = move |chunk: usize| (chunk * per).min(reps)..((chunk + 1) * per).min(reps);

    let rounds = alternate_chunked(
        rounds,
        CHUNKS,
        |_, chunk| {
            rt.block_on(async {
                let started = Instant::now();
                for rep in chunk_reps(chunk) {
                    let items = table.fetch(&open_items_below(bound(rep))).await.expect("query");
                    returned_ours += items.len();
                    black_box(items);
                }
                started.elapsed()
            })
        },
        |_, chunk| {
            let started = Instant::now();
            for rep in chunk_reps(chunk) {
                // Parameters in the store's order: done, rank (the limit is in the text).
                let items: Vec<Item> = stmt
                    .query_map(params![false, bound(rep)], |r| {
                        Ok(Item {
                            id: r.get(0)?,
                            title: r.get(1)?,
                            rank: r.get(2)?,
                            done: r.get(3)?,
                            version: r.get(4)?,
                        })
                    })
                    .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                    .expect("raw query");
                returned_raw += items.len();
                black_box(items);
            }
            started.elapsed()
        },
    );
    assert_eq!(returned_ours, returned_raw, "both sides return the same rows");
    assert_eq!(
        sql.params,
        vec![sync_runtime::Value::Bool(false), sync_runtime::Value::Int(0)],
        "the store's parameters are (done, rank): {}",
        sql.sql
    );
    drop(stmt);
    drop(conn);
    rt.block_on(store.close())?;
    Ok(Figure::new("query", reps as u64, "queries", Some(0.95), rounds)
        .with("rows", format!("{rows}"), rows.into())
        .with("sql", sql.sql.clone(), sql.sql.into()))
}

/// `queue_read`: `Store::pending_count` and `Store::next_op` with `ops` pending
/// operations over a `rows`-row table, vs the same two statements with raw rusqlite.
pub fn queue_read(rt: &Runtime, dir: &Path, rounds: usize, rows: usize, ops: usize, calls: usize) -> Res<Vec<Figure>> {
    let path = dir.join("queue.db");
    rt.block_on(model::create_store_file(&path))?;
    let mut seed = model::open_raw(&path)?;
    model::seed_rows_unqueued(&mut seed, &Item::many("pulled", rows.saturating_sub(ops)))?;
    drop(seed);
    let store = rt.block_on(async {
        let store = Store::open(&path).await?;
        let table = store.table::<Item>().await?;
        table.insert_many(Item::many("local", ops)).await?;
        assert_eq!(table.count_all().await?, rows as u64);
        Ok::<_, sync_runtime::Error>(store)
    })?;
    let conn = model::open_raw(&path)?;
    let ops_table = sync_runtime::system::OPERATIONS_TABLE;
    let mut count = conn.prepare(&format!("SELECT count(*) FROM {ops_table}"))?;
    let mut next = conn.prepare(&format!(
        "SELECT seq, kind, table_name, item_id, state, attempts, op_version, created_at FROM {ops_table} \
         ORDER BY seq LIMIT 1"
    ))?;

    let per = calls.div_ceil(CHUNKS);
    let counted = alternate_chunked(
        rounds,
        CHUNKS,
        |_, _| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..per {
                    assert_eq!(black_box(store.pending_count().await.expect("count")), ops as u64);
                }
                started.elapsed()
            })
        },
        |_, _| {
            let started = Instant::now();
            for _ in 0..per {
                let n: i64 = count.query_row([], |r| r.get(0)).expect("raw count");
                assert_eq!(black_box(n), ops as i64);
            }
            started.elapsed()
        },
    );
    let nexts = alternate_chunked(
        rounds,
        CHUNKS,
        |_, _| {
            rt.block_on(async {
                let started = Instant::now();
                for _ in 0..per {
                    black_box(store.next_op().await.expect("next").expect("an op"));
                }
                started.elapsed()
            })
        },
        |_, _| {
            let started = Instant::now();
            for _ in 0..per {
                let op = next
                    .query_row([], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, u32>(5)?,
                            r.get::<_, i64>(6)?,
                            r.get::<_, String>(7)?,
                        ))
                    })
                    .expect("raw next");
                black_box(op);
            }
            started.elapsed()
        },
    );
    drop((count, next));
    drop(conn);
    rt.block_on(store.close())?;
    let size =
        |f: Figure| f.with("pending", format!("{ops} of {rows} rows"), serde_json::json!({"ops": ops, "rows": rows}));
    Ok(vec![
        size(Figure::new("queue_read.pending_count", (per * CHUNKS) as u64, "calls", None, counted)),
        size(Figure::new("queue_read.next_op", (per * CHUNKS) as u64, "calls", None, nexts)),
    ])
}

/// `idle`: a store file opened, one query run, then `seconds` of nothing: the CPU time
/// the whole process spends meanwhile (its store thread, checkpointer, read connections;
/// the bench's idle runtime too), against a budget of 10 ms (the "raw" side). A store
/// with nothing to do sleeps: anything it spins shows here.
pub fn idle(rt: &Runtime, dir: &Path, seconds: u64) -> Res<Figure> {
    let path = dir.join("idle.db");
    let store = rt.block_on(Store::open(&path))?;
    let table = rt.block_on(store.table::<Item>())?;
    rt.block_on(table.insert(Item::nth("idle", 0, 1)))?;
    black_box(rt.block_on(table.fetch(&open_items_below(10)))?);
    let cpu = crate::measure::process_cpu();
    std::thread::sleep(Duration::from_secs(seconds));
    let spent = cpu.elapsed();
    rt.block_on(store.close())?;
    Ok(Figure::idle("idle", spent, seconds).with("idle", format!("{seconds} s"), seconds.into()))
}
