use sync_runtime::SyncEntity;

#[derive(SyncEntity)]
pub struct Counter {
    pub id: i64,
    pub count: i64,
}

fn main() {}
