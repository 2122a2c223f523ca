//! Why the server could not be reached: the HTTP stack's error, kept whole and cheap
//! to clone.

use std::fmt;
use std::sync::Arc;

/// Why the server could not be reached: the HTTP stack's own error (a refused
/// connection, a reset, a timeout), the source of [`Error::Network`](crate::Error::Network). It is shared
/// behind an `Arc`, so a [`PushCancel`](crate::PushCancel) holding it stays cheap to
/// clone. It displays as the stack's error, and its `source()` chain is the stack's;
/// two causes are equal when their chains read the same.
#[derive(Clone)]
pub struct NetworkCause(Arc<dyn std::error::Error + Send + Sync>);

impl NetworkCause {
    pub(crate) fn new(error: impl std::error::Error + Send + Sync + 'static) -> NetworkCause {
        NetworkCause(Arc::new(error))
    }

    /// Whether the request timed out (rather than failing to connect, or being cut).
    pub fn is_timeout(&self) -> bool {
        self.0.downcast_ref::<reqwest::Error>().is_some_and(reqwest::Error::is_timeout)
    }

    /// The whole chain as text, for comparing causes.
    fn chain(&self) -> Vec<String> {
        let mut chain = vec![self.0.to_string()];
        let mut source = self.0.source();
        while let Some(cause) = source {
            chain.push(cause.to_string());
            source = cause.source();
        }
        chain
    }
}

impl fmt::Display for NetworkCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl fmt::Debug for NetworkCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::error::Error for NetworkCause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for NetworkCause {
    fn eq(&self, other: &NetworkCause) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.chain() == other.chain()
    }
}

impl Eq for NetworkCause {}
