//! Shared pieces of the workspace tests: the models they use and a seeded random source.

use sync_runtime::SyncEntity;

/// The quickstart's model.
#[derive(SyncEntity, Clone, Debug, PartialEq)]
#[sync(table = "TodoItem")]
pub struct TodoItem {
    /// The id.
    pub id: String,
    /// What to do.
    pub text: String,
    /// Done or not.
    pub complete: bool,
    /// The server's version.
    #[sync(version)]
    pub version: Option<String>,
}

impl TodoItem {
    /// A new item with this id (empty: the store makes one) and text.
    pub fn new(id: &str, text: &str) -> TodoItem {
        TodoItem { id: id.to_owned(), text: text.to_owned(), complete: false, version: None }
    }
}

/// A small, seeded, reproducible random source (xorshift64*), so a failing seed can be
/// replayed exactly.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A source for this seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A model with a column of every supported type, for the fuzzers.
#[derive(SyncEntity, Clone, Debug, PartialEq)]
#[sync(table = "Everything")]
pub struct Everything {
    /// The id.
    pub id: String,
    /// Text.
    pub s: String,
    /// A flag.
    pub b: bool,
    /// A 32-bit number.
    pub n32: i32,
    /// A 64-bit number.
    pub n64: i64,
    /// A float.
    pub f: f64,
    /// A timestamp.
    pub at: time::OffsetDateTime,
    /// A UUID.
    pub u: uuid::Uuid,
    /// JSON.
    pub j: serde_json::Value,
    /// Bytes.
    pub bytes: Vec<u8>,
    /// Optional text.
    pub os: Option<String>,
    /// An optional number.
    pub on: Option<i64>,
    /// An optional float.
    pub of: Option<f64>,
    /// An optional timestamp.
    pub oat: Option<time::OffsetDateTime>,
    /// Optional bytes.
    pub ob: Option<Vec<u8>>,
    /// The server's version.
    #[sync(version)]
    pub version: Option<String>,
}

pub mod fuzzing;
pub mod http1;
pub mod oracle;
pub mod proxy;
pub mod workload;
