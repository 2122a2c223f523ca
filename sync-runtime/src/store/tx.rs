//! One SQLite transaction on the store thread, and the write path every local insert,
//! update and delete goes through: the row change and its queue operation, together.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rusqlite::{Connection, ErrorCode, Transaction, TransactionBehavior, params_from_iter};

use crate::error::{Error, Result};
use sync_core::SyncEntity;
use sync_core::Value;
use sync_core::query::Query;

use super::live::{ChangeOrigin, ChangeSet};
use super::meta::{TableMeta, validate_id};
use super::queue::{self, Collapse, OpKind};
use super::{Worker, schema};

/// A transaction on the local store, handed to the closure of
/// [`Store::transaction`](super::Store::transaction). Every write records its queue
/// operation in this same transaction; an `Err` from the closure rolls all of it back.
///
/// ```
/// # use sync_runtime::{Error, Store, SyncEntity};
/// #[derive(SyncEntity, Clone, Debug)]
/// struct Account { id: String, balance: i64 }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = Store::open_in_memory().await?;
/// let accounts = store.table::<Account>().await?;
/// accounts.insert(Account { id: "a".into(), balance: 10 }).await?;
/// accounts.insert(Account { id: "b".into(), balance: 0 }).await?;
///
/// // Move 30 from a to b: refused as a whole, nothing written, nothing queued.
/// let moved = store
///     .transaction(|tx| {
///         let mut b = tx.get::<Account>("b")?.expect("b exists");
///         b.balance += 30;
///         tx.update(&b)?;
///         let mut a = tx.get::<Account>("a")?.expect("a exists");
///         a.balance -= 30;
///         if a.balance < 0 {
///             return Err(Error::InvalidValue { table: "Account".into(), column: "balance".into(), reason: "overdrawn".into() });
///         }
///         tx.update(&a)
///     })
///     .await;
/// assert!(moved.is_err());
/// assert_eq!(accounts.get("b").await?.map(|b| b.balance), Some(0));
/// # Ok::<_, sync_runtime::Error>(())
/// # }).unwrap();
/// ```
pub struct Tx<'a> {
    pub(super) tx: Transaction<'a>,
    /// The store's tables, as they were when the transaction began: borrowed, never
    /// moved out, so a panic in the closure cannot leave the store without them.
    tables: &'a HashMap<&'static str, Arc<TableMeta>>,
    /// Operations whose request is out (see [`Tx::set_in_flight`]).
    in_flight: HashSet<i64>,
    registered: Vec<Arc<TableMeta>>,
    /// The time this transaction queues its operations at, taken on first use: one
    /// timestamp for every operation of one commit.
    now: Option<String>,
    /// What the transaction touched, told to the store's listeners when it commits.
    changes: RefCell<ChangeSet>,
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").finish_non_exhaustive()
    }
}

/// Runs `f` in one transaction: commit when it returns `Ok`, roll back otherwise (and
/// when it panics: the store's state is then left as it was). A commit is told to the
/// store's listeners as a change of `origin`.
pub(super) fn run<R>(w: &mut Worker, origin: ChangeOrigin, f: impl FnOnce(&mut Tx<'_>) -> Result<R>) -> Result<R> {
    // IMMEDIATE: take the write lock up front, waiting (busy timeout) for another
    // process holding it; a deferred transaction that reads and then writes fails at
    // once with "database is locked" when another process wrote in between.
    let tx = w.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // The transaction borrows the connection and the table cache; the in-flight set is
    // copied into it. Tables it creates and changes to the in-flight marks are part of
    // the transaction: kept on commit, dropped on rollback or panic.
    let (committed, in_flight, registered, changes) = {
        let mut t = Tx {
            tx,
            tables: &w.tables,
            in_flight: w.in_flight.clone(),
            registered: Vec::new(),
            now: None,
            changes: RefCell::default(),
        };
        let out = f(&mut t);
        let Tx { tx, in_flight, registered, changes, .. } = t;
        let committed = match out {
            Ok(out) => tx.commit().map(|()| out).map_err(Error::from),
            Err(e) => Err(e),
        };
        (committed, in_flight, registered, changes.into_inner())
    };
    if committed.is_ok() {
        for meta in registered {
            w.tables.insert(meta.name, meta);
        }
        w.in_flight = in_flight;
        w.hub.publish(changes, origin);
    }
    committed
}

impl Tx<'_> {
    /// The metadata of `E`'s table, creating or migrating it inside this transaction on
    /// first use.
    pub(crate) fn meta<E: SyncEntity>(&mut self) -> Result<Arc<TableMeta>> {
        if let Some(meta) = self.tables.get(E::TABLE) {
            return Ok(Arc::clone(meta));
        }
        if let Some(meta) = self.registered.iter().find(|m| m.name == E::TABLE) {
            return Ok(Arc::clone(meta));
        }
        let meta = Arc::new(TableMeta::new(E::TABLE, E::FIELD_DEFS)?);
        schema::ensure_table(&self.tx, &meta)?;
        self.registered.push(Arc::clone(&meta));
        Ok(meta)
    }

    /// The metadata of a table opened in this process, by name.
    pub(crate) fn meta_by_name(&self, name: &str) -> Option<Arc<TableMeta>> {
        self.tables.get(name).or_else(|| self.registered.iter().find(|m| m.name == name)).cloned()
    }

    /// Inserts an item; an empty id is replaced by a new lowercase UUID v4. Returns the
    /// item as stored, which is what [`Tx::get`] gives back: its id, timestamps in UTC
    /// at millisecond precision, and the system fields as the store holds them (no
    /// version yet).
    pub fn insert<E: SyncEntity>(&mut self, mut item: E) -> Result<E> {
        let meta = self.meta::<E>()?;
        if item.id().is_empty() {
            item.set_id(uuid::Uuid::new_v4().to_string());
        }
        let row = meta.row_from_fields(item.to_values());
        let stored = self.write(&meta, OpKind::Insert, item.id(), Some(row))?;
        match stored {
            Some(row) => meta.decode(&row),
            None => Ok(item),
        }
    }

    /// Inserts many items: exactly what [`Tx::insert`] of each in turn does, faster.
    /// Returns the items as stored, as [`Tx::insert`] does.
    //
    // When no operation of the table is queued as the batch starts, no item of it can
    // meet one: the batch queues only inserts, and inserting an id a second time fails
    // on its row first. So each item then skips the look at the queue, and its two
    // statements are prepared once for the whole batch. An item whose row insert fails
    // (and every item after it) goes the general way, which reports the exact error.
    pub fn insert_many<E: SyncEntity>(&mut self, items: Vec<E>) -> Result<Vec<E>> {
        let meta = self.meta::<E>()?;
        let mut out = Vec::with_capacity(items.len());
        let mut items = items.into_iter();
        let mut failed = None;
        if !queue::table_has_ops(&self.tx, meta.name)? {
            let now: &str = self.now.get_or_insert_with(queue::now_rfc3339);
            let mut insert = self.tx.prepare_cached(&meta.insert)?;
            let mut append = self.tx.prepare_cached(queue::append_sql())?;
            for mut item in items.by_ref() {
                if item.id().is_empty() {
                    item.set_id(uuid::Uuid::new_v4().to_string());
                }
                let row = meta.row_from_fields(item.to_values());
                validate_id(meta.name, item.id())?;
                meta.validate_row(&row)?;
                match insert.execute(params_from_iter(row.iter())) {
                    Ok(_) => {}
                    Err(rusqlite::Error::SqliteFailure(f, _)) if f.code == ErrorCode::ConstraintViolation => {
                        failed = Some(item);
                        break;
                    }
                    Err(rusqlite::Error::SqliteFailure(f, _)) if f.code == ErrorCode::TooBig => {
                        return Err(Error::RowTooLarge { table: meta.name.to_owned(), id: item.id().to_owned() });
                    }
                    Err(e) => return Err(e.into()),
                }
                let no_item: Option<&str> = None;
                append.execute(rusqlite::params![OpKind::Insert.as_str(), meta.name, item.id(), no_item, now])?;
                let mut changes = self.changes.borrow_mut();
                changes.row(meta.name, item.id());
                changes.queue();
                out.push(meta.decode(&row)?);
            }
        }
        for item in failed.into_iter().chain(items) {
            out.push(self.insert(item)?);
        }
        Ok(out)
    }

    /// Updates an item's own columns (the system columns are the store's to keep).
    pub fn update<E: SyncEntity>(&mut self, item: &E) -> Result<()> {
        self.update_values::<E>(item.id(), item.to_values())
    }

    /// [`Tx::update`] of the item with this id and these field values.
    pub(super) fn update_values<E: SyncEntity>(&mut self, id: &str, values: Vec<Value>) -> Result<()> {
        let meta = self.meta::<E>()?;
        let row = meta.row_from_fields(values);
        self.write(&meta, OpKind::Update, id, Some(row)).map(drop)
    }

    /// Deletes an item.
    pub fn delete<E: SyncEntity>(&mut self, id: &str) -> Result<()> {
        let meta = self.meta::<E>()?;
        self.write(&meta, OpKind::Delete, id, None).map(drop)
    }

    /// The item with this id, if any.
    pub fn get<E: SyncEntity>(&mut self, id: &str) -> Result<Option<E>> {
        let meta = self.meta::<E>()?;
        get_on(&self.tx, &meta, id)
    }

    /// The items a query selects, in its order.
    pub fn fetch<E: SyncEntity>(&mut self, query: &Query<E>) -> Result<Vec<E>> {
        let meta = self.meta::<E>()?;
        fetch_on(&self.tx, &meta, query)
    }

    /// How many items a query's filter selects (its order, limit and offset ignored).
    pub fn count<E: SyncEntity>(&mut self, query: &Query<E>) -> Result<u64> {
        let meta = self.meta::<E>()?;
        count_on(&self.tx, &meta, query)
    }

    /// How many items the table holds.
    pub fn count_all<E: SyncEntity>(&mut self) -> Result<u64> {
        self.count(&Query::<E>::new())
    }

    pub(crate) fn read_row(&self, meta: &TableMeta, id: &str) -> Result<Option<Vec<Value>>> {
        let mut stmt = self.tx.prepare_cached(&meta.select_by_id)?;
        let mut rows = stmt.query([id])?;
        match rows.next()? {
            Some(r) => meta.read_row(r).map(Some),
            None => Ok(None),
        }
    }

    /// The write path: validate, apply the collapse rule against the item's latest
    /// operation, change the row, change the queue. All inside `self.tx`. Returns the
    /// full row an insert wrote (`None` for updates and deletes).
    pub(crate) fn write(
        &mut self,
        meta: &TableMeta,
        new: OpKind,
        id: &str,
        row: Option<Vec<Value>>,
    ) -> Result<Option<Vec<Value>>> {
        validate_id(meta.name, id)?;
        if let Some(row) = &row {
            meta.validate_row(row)?;
        }
        let mut latest = queue::latest_op(&self.tx, meta.name, id)?;
        let mut behind_another = false;
        // Only an item with an operation queued can have two (most writes have none).
        let first = match latest {
            Some(_) => queue::earliest_op(&self.tx, meta.name, id)?,
            None => None,
        };
        if let Some(first) = first {
            // A second operation of the item was queued while the first was in flight;
            // the first is not any more: the two become one before the collapse rules
            // see the latest (which assume it is the item's only one).
            if latest.as_ref().is_some_and(|l| l.seq != first.seq) && !self.in_flight.contains(&first.seq) {
                self.absorb_later_ops(meta.name, id, first.seq)?;
                latest = queue::latest_op(&self.tx, meta.name, id)?;
            }
            behind_another = latest.as_ref().is_some_and(|l| l.seq != first.seq);
        }
        let existing = latest.as_ref().filter(|op| !self.in_flight.contains(&op.seq));
        // Behind an operation still in flight, the latest one is no first insert: the
        // first may land, so a delete after it must be sent, as after an attempt.
        let state_of = |op: &queue::OpRow| match op.state {
            queue::OpState::Pending if behind_another => queue::OpState::Attempted,
            state => state,
        };
        let mut decision = queue::collapse(existing.map(|op| (op.kind, state_of(op))), new).map_err(|reason| {
            Error::QueueConflict {
                table: meta.name.to_owned(),
                id: id.to_owned(),
                existing: existing.map_or(new, |op| op.kind),
                new,
                reason,
            }
        })?;

        // The row change.
        let mut snapshot: Option<String> = None;
        let mut written = None;
        match new {
            OpKind::Insert => {
                let mut row = row.unwrap_or_else(|| meta.empty_row());
                if let (Collapse::Become(OpKind::Update), Some(op)) = (decision, existing) {
                    // Re-creating an item whose delete is still queued: the server still
                    // has it, so keep its system columns for the update's If-Match.
                    if let Some(snapshot) = op.item.as_deref() {
                        let deleted = meta.row_from_queued_item(op.seq, snapshot)?;
                        meta.copy_server_columns(&mut row, &deleted);
                    }
                    if meta.version_of(&row).is_none() {
                        // The deleted item never got a version from the server (its insert
                        // was only attempted): an update would have no If-Match and could
                        // overwrite another client's item blindly. It is an insert again;
                        // if the earlier attempt landed, the push finds out (409).
                        decision = Collapse::Become(OpKind::Insert);
                    }
                }
                self.exec_row(meta, id, &meta.insert, params_from_iter(row.iter())).map_err(|e| match e {
                    Error::Sqlite(rusqlite::Error::SqliteFailure(f, _)) if f.code == ErrorCode::ConstraintViolation => {
                        Error::AlreadyExists { table: meta.name.to_owned(), id: id.to_owned() }
                    }
                    other => other,
                })?;
                written = Some(row);
            }
            OpKind::Update => {
                let row = row.unwrap_or_else(|| meta.empty_row());
                let id_value = Value::String(id.to_owned());
                let params: Vec<&Value> = row
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| meta.is_app_column(*i) && *i != 0)
                    .map(|(_, v)| v)
                    .chain(std::iter::once(&id_value))
                    .collect();
                let changed = self.exec_row(meta, id, &meta.update_app, params_from_iter(params))?;
                if changed == 0 {
                    return Err(Error::NotFound { table: meta.name.to_owned(), id: id.to_owned() });
                }
            }
            OpKind::Delete => {
                let Some(current) = self.read_row(meta, id)? else {
                    return Err(Error::NotFound { table: meta.name.to_owned(), id: id.to_owned() });
                };
                snapshot = Some(meta.row_to_json(&current).to_string());
                self.tx.prepare_cached(&meta.delete)?.execute([id])?;
            }
        }

        tracing::trace!(
            table = meta.name,
            id,
            ?new,
            ?decision,
            latest = ?latest.as_ref().map(|op| (op.seq, op.kind, op.state)),
            in_flight = latest.as_ref().is_some_and(|op| self.in_flight.contains(&op.seq)),
            "queue write"
        );
        // The queue change.
        match (decision, existing) {
            (Collapse::Append(kind), _) => {
                let now: &str = self.now.get_or_insert_with(queue::now_rfc3339);
                queue::append_op(&self.tx, kind, meta.name, id, snapshot.as_deref(), now)?;
            }
            (Collapse::Keep, Some(op)) => queue::rewrite_op(&self.tx, op.seq, op.kind, op.item.as_deref())?,
            (Collapse::Become(kind), Some(op)) => {
                let item = if kind == OpKind::Delete { snapshot.as_deref() } else { None };
                queue::rewrite_op(&self.tx, op.seq, kind, item)?;
            }
            (Collapse::Remove, Some(op)) => queue::remove_op(&self.tx, op.seq)?,
            (_, None) => unreachable!("collapse only keeps, changes or removes an existing operation"),
        }
        let mut changes = self.changes.borrow_mut();
        changes.row(meta.name, id);
        changes.queue();
        if existing.is_some_and(|op| op.state == queue::OpState::Failed) {
            // Rewriting or removing a failed operation removes its error row.
            changes.errors();
        }
        Ok(written)
    }

    fn exec_row<P: rusqlite::Params>(&self, meta: &TableMeta, id: &str, sql: &str, params: P) -> Result<usize> {
        self.tx.prepare_cached(sql)?.execute(params).map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::TooBig => {
                Error::RowTooLarge { table: meta.name.to_owned(), id: id.to_owned() }
            }
            other => Error::Sqlite(other),
        })
    }

    /// Writes a full row (system columns included) without queueing anything: the
    /// server's copy of an item, or an error resolution.
    pub(crate) fn upsert_row_unqueued(&mut self, meta: &TableMeta, row: &[Value]) -> Result<()> {
        let id = match row.first() {
            Some(Value::String(id)) => id.clone(),
            _ => {
                return Err(Error::InvalidValue {
                    table: meta.name.to_owned(),
                    column: sync_core::system::ID.into(),
                    reason: "missing id".into(),
                });
            }
        };
        validate_id(meta.name, &id)?;
        meta.validate_row(row)?;
        self.exec_row(meta, &id, &meta.upsert, params_from_iter(row.iter()))?;
        self.changes.get_mut().row(meta.name, &id);
        Ok(())
    }

    /// Deletes the local row of `id` without queueing anything; whether there was one.
    pub(crate) fn delete_row_unqueued(&mut self, meta: &TableMeta, id: &str) -> Result<bool> {
        let had = self.tx.prepare_cached(&meta.delete)?.execute([id])? > 0;
        if had {
            self.changes.get_mut().row(meta.name, id);
        }
        Ok(had)
    }

    /// What this transaction touched so far, to add to.
    pub(crate) fn changes(&self) -> std::cell::RefMut<'_, ChangeSet> {
        self.changes.borrow_mut()
    }

    /// Marks an operation as in flight (its request is out) or no longer, as part of
    /// this transaction: a write to its item queues a second operation instead of
    /// collapsing into it.
    pub(crate) fn set_in_flight(&mut self, seq: i64, in_flight: bool) {
        if in_flight {
            self.in_flight.insert(seq);
        } else {
            self.in_flight.remove(&seq);
        }
    }
}

/// The item with this id, if any, on a connection (in a transaction or not).
pub(crate) fn get_on<E: SyncEntity>(conn: &Connection, meta: &TableMeta, id: &str) -> Result<Option<E>> {
    let mut stmt = conn.prepare_cached(&meta.select_by_id)?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(r) => meta.decode_sql_row(r).map(Some),
        None => Ok(None),
    }
}

/// The items a query selects, on a connection (in a transaction or not): one
/// statement, so it reads one snapshot either way.
pub(crate) fn fetch_on<E: SyncEntity>(conn: &Connection, meta: &TableMeta, query: &Query<E>) -> Result<Vec<E>> {
    let q = meta.select(query.spec())?;
    let mut stmt = conn.prepare_cached(&q.sql)?;
    let mut rows = stmt.query(params_from_iter(q.params.iter()))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(meta.decode_sql_row(r)?);
    }
    Ok(out)
}

/// How many items a query's filter selects, on a connection.
pub(crate) fn count_on<E: SyncEntity>(conn: &Connection, meta: &TableMeta, query: &Query<E>) -> Result<u64> {
    let q = sync_core::sql::count(&sync_core::sql::Sqlite, meta.name, query.spec(), meta)?;
    let n: i64 = conn.prepare_cached(&q.sql)?.query_row(params_from_iter(q.params.iter()), |r| r.get(0))?;
    Ok(n as u64)
}
