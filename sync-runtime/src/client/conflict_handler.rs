//! Conflict handlers: what happens when the server answers 409 or 412.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::error::Result;
use crate::op::OpKind;
use crate::store::TableMeta;
use sync_core::SyncEntity;
use sync_core::Value;

/// A conflict, as a handler sees it.
#[derive(Clone, Debug)]
pub struct Conflict<E> {
    /// The operation that met it.
    pub kind: OpKind,
    /// 409 (insert of an existing id, stale version) or 412 (If-Match failed).
    pub status: u16,
    /// The local item (for a delete, the item as it was deleted).
    pub client: E,
    /// The server's current copy.
    pub server: E,
}

/// What a handler decides.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolution<E> {
    /// Take the server's copy locally; the local change is dropped.
    ServerWins,
    /// Send the local change again over the server's version (it overwrites).
    ClientWins,
    /// Store this merged item locally and send it over the server's version.
    Merged(E),
    /// Leave it to the app: the operation gets an error row, and the push goes on.
    Unresolved,
}

/// Decides conflicts of one table. Implemented by [`ServerWins`], [`ClientWins`] and
/// every `Fn(&Conflict<E>) -> Resolution<E>`.
pub trait ConflictHandler<E>: Send + Sync + 'static {
    /// Decides one conflict.
    fn resolve(&self, conflict: &Conflict<E>) -> Resolution<E>;
}

impl<E, F> ConflictHandler<E> for F
where
    F: Fn(&Conflict<E>) -> Resolution<E> + Send + Sync + 'static,
{
    fn resolve(&self, conflict: &Conflict<E>) -> Resolution<E> {
        self(conflict)
    }
}

/// The server's copy always wins.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerWins;

impl<E> ConflictHandler<E> for ServerWins {
    fn resolve(&self, _: &Conflict<E>) -> Resolution<E> {
        Resolution::ServerWins
    }
}

/// The local change always wins: it is sent again over the server's version.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientWins;

impl<E> ConflictHandler<E> for ClientWins {
    fn resolve(&self, _: &Conflict<E>) -> Resolution<E> {
        Resolution::ClientWins
    }
}

/// A handler's decision, untyped (rows in column order).
pub(crate) enum ErasedResolution {
    ServerWins,
    ClientWins,
    Merged(Vec<Value>),
    Unresolved,
}

/// A typed handler behind a type-erased face, so the push loop can serve every table.
pub(crate) trait ErasedHandler: Send + Sync {
    fn resolve(
        &self,
        meta: &TableMeta,
        kind: OpKind,
        status: u16,
        client: &[Value],
        server: &[Value],
    ) -> Result<ErasedResolution>;
}

struct Typed<E, H> {
    handler: H,
    _marker: PhantomData<fn() -> E>,
}

impl<E: SyncEntity, H: ConflictHandler<E>> ErasedHandler for Typed<E, H> {
    fn resolve(
        &self,
        meta: &TableMeta,
        kind: OpKind,
        status: u16,
        client: &[Value],
        server: &[Value],
    ) -> Result<ErasedResolution> {
        let conflict = Conflict { kind, status, client: meta.decode::<E>(client)?, server: meta.decode::<E>(server)? };
        Ok(match self.handler.resolve(&conflict) {
            Resolution::ServerWins => ErasedResolution::ServerWins,
            Resolution::ClientWins => ErasedResolution::ClientWins,
            Resolution::Merged(item) => ErasedResolution::Merged(meta.row_from_fields(item.to_values())),
            Resolution::Unresolved => ErasedResolution::Unresolved,
        })
    }
}

pub(crate) fn erase<E: SyncEntity>(handler: impl ConflictHandler<E>) -> Arc<dyn ErasedHandler> {
    Arc::new(Typed::<E, _> { handler, _marker: PhantomData })
}
