//! `push()`: send the queued operations in strict sequence order.
//!
//! - `pipeline`: the push's loop, and the batches of operations the store prepares
//!   ahead of need;
//! - `prepare`: one operation read, its request built, and marked attempted;
//! - `answer`: one operation sent, and its answer settled;
//! - `conflict`: a 409 or 412, settled.
//!
//! What the push tells the app (its report) lives in `crate::push_report`, which the
//! error type also needs.

mod answer;
mod conflict;
mod pipeline;
mod prepare;

pub(crate) use pipeline::{push, push_until};
