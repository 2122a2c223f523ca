//! `push()`: send the queued operations in strict sequence order (DESIGN.md section 7).
//!
//! - `pipeline`: the push's loop, and the batches of operations the store prepares
//!   ahead of need;
//! - `prepare`: one operation read, its request built, and marked attempted;
//! - `answer`: one operation sent, and its answer settled;
//! - `conflict`: a 409 or 412, settled;
//! - `report`: what the push tells the app.

mod answer;
mod conflict;
mod pipeline;
mod prepare;
mod report;

pub(crate) use pipeline::push;
pub use report::{ConflictOutcome, ConflictResolution, PushCancel, PushReport, PushStatus};
