// Attribute mistakes and field-type mistakes of one struct, all in one compile, each
// once, at its token.
use sync_runtime::SyncEntity;

#[derive(SyncEntity)]
#[sync(tabel = "Item")]
pub struct Item {
    pub id: u32,
    #[sync(local_only)]
    pub draft: String,
    #[sync(version)]
    pub version: i64,
    pub tags: Vec<String>,
    #[sync(renmae = "x")]
    pub size: i64,
}

fn main() {}
