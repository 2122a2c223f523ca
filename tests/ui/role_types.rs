use sync_runtime::SyncEntity;

#[derive(SyncEntity)]
pub struct TodoItem {
    pub id: String,
    #[sync(local_only)]
    pub draft: String,
    #[sync(version)]
    pub version: i64,
    #[sync(updated_at)]
    pub updated: Option<bool>,
    #[sync(created_at)]
    pub created: Vec<u8>,
    #[sync(deleted)]
    pub deleted: Option<bool>,
}

fn main() {}
