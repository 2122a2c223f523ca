//! The typed handle on one table.

use std::marker::PhantomData;
use std::sync::Arc;

use sync_core::SyncEntity;
use sync_core::query::{Filter, Order, Query};

use super::queue::{self, PendingOp};
use super::{Store, StoreCall, TableMeta, tx};

/// A typed handle on the local table of `E`: local reads and writes, each write with its
/// queue operation in the same transaction. Get one with [`Store::table`]; cheap to
/// clone.
///
/// ```
/// # use sync_runtime::{OpKind, Store, SyncEntity};
/// #[derive(SyncEntity, Clone, Debug, PartialEq)]
/// struct Note {
///     id: String,
///     body: String,
///     pinned: bool,
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = Store::open_in_memory().await?;
/// let notes = store.table::<Note>().await?;
///
/// let mut note = notes.insert(Note { id: String::new(), body: "hello".into(), pinned: false }).await?;
/// note.pinned = true;
/// notes.update(&note).await?;
/// assert_eq!(notes.get(&note.id).await?, Some(note.clone()));
///
/// // The insert and the update are one queued insert (carrying the latest data).
/// let ops = notes.pending_ops().await?;
/// assert_eq!((ops.len(), ops[0].kind), (1, OpKind::Insert));
///
/// // Deleting an item never pushed leaves nothing to send.
/// notes.delete(&note.id).await?;
/// assert_eq!((notes.get(&note.id).await?, notes.pending_count().await?), (None, 0));
/// # Ok::<_, sync_runtime::Error>(())
/// # }).unwrap();
/// ```
pub struct Table<E> {
    store: Store,
    meta: Arc<TableMeta>,
    _marker: PhantomData<fn() -> E>,
}

impl<E> Clone for Table<E> {
    fn clone(&self) -> Self {
        Table { store: self.store.clone(), meta: Arc::clone(&self.meta), _marker: PhantomData }
    }
}

impl<E> std::fmt::Debug for Table<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("name", &self.meta.name).finish_non_exhaustive()
    }
}

impl<E: SyncEntity> Table<E> {
    pub(crate) fn new(store: Store, meta: Arc<TableMeta>) -> Self {
        Table { store, meta, _marker: PhantomData }
    }

    /// The table's name.
    pub fn name(&self) -> &'static str {
        self.meta.name
    }

    /// The store this table lives in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Inserts an item and queues its insert; an empty id is replaced by a new lowercase
    /// UUID v4. Returns the item as stored, equal to what [`Table::get`] gives back:
    /// timestamps in UTC at millisecond precision (the store's and the protocol's), and
    /// the fields that view system columns as the store holds them (no version until
    /// the server sends one).
    pub fn insert(&self, item: E) -> StoreCall<E> {
        self.store.write_one(move |tx| tx.insert(item))
    }

    /// Inserts many items in one transaction (each with its queue operation): all of
    /// them or none. Returns the items as stored, as [`Table::insert`] does.
    pub fn insert_many(&self, items: Vec<E>) -> StoreCall<Vec<E>> {
        self.store.transaction(move |tx| tx.insert_many(items))
    }

    /// Updates an item's own columns and queues its update (the system columns are the
    /// store's to keep).
    pub fn update(&self, item: &E) -> StoreCall<()> {
        let (id, values) = (item.id().to_owned(), item.to_values());
        self.store.write_one(move |tx| tx.update_values::<E>(&id, values))
    }

    /// Deletes the item with this id and queues its delete.
    pub fn delete(&self, id: &str) -> StoreCall<()> {
        let id = id.to_owned();
        self.store.write_one(move |tx| tx.delete::<E>(&id))
    }

    // Reads are one statement each: they run on a read connection as they are (one
    // statement reads one snapshot), without a BEGIN / COMMIT around them. The table
    // exists: `Store::table` made it before handing out this handle.

    /// The item with this id, if any.
    pub fn get(&self, id: &str) -> StoreCall<Option<E>> {
        let (id, meta) = (id.to_owned(), Arc::clone(&self.meta));
        self.store.read(move |conn| tx::get_on(conn, &meta, &id))
    }

    /// The items a query selects, in its order.
    pub fn fetch(&self, query: &Query<E>) -> StoreCall<Vec<E>> {
        self.fetch_owned(query.clone())
    }

    fn fetch_owned(&self, query: Query<E>) -> StoreCall<Vec<E>> {
        let meta = Arc::clone(&self.meta);
        self.store.read(move |conn| tx::fetch_on(conn, &meta, &query))
    }

    /// How many items a query's filter selects (its order, limit and offset ignored).
    pub fn count(&self, query: &Query<E>) -> StoreCall<u64> {
        self.count_owned(query.clone())
    }

    /// How many items the table holds.
    pub fn count_all(&self) -> StoreCall<u64> {
        self.count_owned(Query::new())
    }

    fn count_owned(&self, query: Query<E>) -> StoreCall<u64> {
        let meta = Arc::clone(&self.meta);
        self.store.read(move |conn| tx::count_on(conn, &meta, &query))
    }

    /// Starts a query on this table:
    /// `todos.query().filter(TodoItem::FIELDS.complete.eq(false)).all().await?`.
    pub fn query(&self) -> TableQuery<E> {
        TableQuery { table: self.clone(), query: Query::new() }
    }

    /// The queued operations of this table, in push order.
    pub fn pending_ops(&self) -> StoreCall<Vec<PendingOp>> {
        let name = self.meta.name;
        self.store.read(move |conn| queue::list_ops(conn, Some(name)))
    }

    /// How many operations of this table are queued.
    pub fn pending_count(&self) -> StoreCall<u64> {
        let name = self.meta.name;
        self.store.read(move |conn| queue::count_ops(conn, Some(name)))
    }

    /// Whether any operation of this table is queued.
    pub fn has_pending(&self) -> StoreCall<bool> {
        let name = self.meta.name;
        self.store.read(move |conn| Ok(queue::count_ops(conn, Some(name))? > 0))
    }

    pub(crate) fn meta(&self) -> &Arc<TableMeta> {
        &self.meta
    }
}

/// A query being built on a [`Table`]; end it with [`all`](TableQuery::all),
/// [`first`](TableQuery::first) or [`count`](TableQuery::count), or hand it to
/// [`SyncClient::pull`](crate::SyncClient::pull) as the pull's filter.
///
/// ```
/// # use sync_runtime::{Store, SyncEntity};
/// #[derive(SyncEntity, Clone, Debug, PartialEq)]
/// struct Task {
///     id: String,
///     title: String,
///     priority: i64,
///     due: Option<sync_runtime::time::OffsetDateTime>,
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = Store::open_in_memory().await?;
/// let tasks = store.table::<Task>().await?;
/// for (title, priority) in [("taxes", 3), ("milk", 1), ("tickets", 2)] {
///     tasks.insert(Task { id: String::new(), title: title.into(), priority, due: None }).await?;
/// }
/// let f = Task::FIELDS;
/// let urgent = tasks
///     .query()
///     .filter(f.priority.ge(2) & f.due.is_null())
///     .filter(f.title.starts_with("t")) // several filters combine with `and`
///     .order_by(f.priority.desc())
///     .limit(10)
///     .all()
///     .await?;
/// let titles: Vec<_> = urgent.iter().map(|t| t.title.as_str()).collect();
/// assert_eq!(titles, ["taxes", "tickets"]);
/// assert_eq!(tasks.query().filter(f.priority.lt(2)).count().await?, 1);
/// let first = tasks.query().order_by(f.title.asc()).first().await?;
/// assert_eq!(first.map(|t| t.title), Some("milk".into()));
/// # Ok::<_, sync_runtime::Error>(())
/// # }).unwrap();
/// ```
pub struct TableQuery<E> {
    table: Table<E>,
    query: Query<E>,
}

impl<E> std::fmt::Debug for TableQuery<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableQuery").field("table", &self.table.meta.name).field("query", &self.query).finish()
    }
}

impl<E: SyncEntity> TableQuery<E> {
    /// Adds a condition; several calls combine with `and`.
    pub fn filter(mut self, filter: Filter<E>) -> Self {
        self.query = self.query.filter(filter);
        self
    }

    /// Adds a sort key.
    pub fn order_by(mut self, order: Order<E>) -> Self {
        self.query = self.query.order_by(order);
        self
    }

    /// Returns at most `n` rows.
    pub fn limit(mut self, n: u64) -> Self {
        self.query = self.query.limit(n);
        self
    }

    /// Skips the first `n` rows.
    pub fn offset(mut self, n: u64) -> Self {
        self.query = self.query.offset(n);
        self
    }

    /// The query built so far (to reuse it, e.g. as a pull filter; [`SyncClient::pull`]
    /// also takes the `TableQuery` itself).
    ///
    /// [`SyncClient::pull`]: crate::SyncClient::pull
    pub fn into_query(self) -> Query<E> {
        self.query
    }

    /// The table and the query.
    pub(super) fn into_parts(self) -> (Table<E>, Query<E>) {
        (self.table, self.query)
    }

    /// Every matching item.
    pub fn all(self) -> StoreCall<Vec<E>> {
        self.table.fetch_owned(self.query)
    }

    /// The first matching item.
    pub fn first(self) -> StoreCall<Option<E>> {
        let (meta, query) = (Arc::clone(&self.table.meta), self.query.limit(1));
        self.table.store.read(move |conn| Ok(tx::fetch_on(conn, &meta, &query)?.into_iter().next()))
    }

    /// How many items match (limit and offset ignored).
    pub fn count(self) -> StoreCall<u64> {
        self.table.count_owned(self.query)
    }
}

impl<E> From<TableQuery<E>> for Query<E> {
    /// The query built so far: what [`TableQuery::into_query`] gives.
    fn from(query: TableQuery<E>) -> Query<E> {
        query.query
    }
}
