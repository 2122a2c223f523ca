use sync_runtime::SyncEntity;

#[derive(SyncEntity)]
#[sync(crate = "::not_sync_runtime")]
pub struct TodoItem {
    pub id: String,
}

fn main() {}
