use sync_runtime::SyncEntity;

#[derive(SyncEntity)]
pub struct TodoItem {
    #[sync(id, version)]
    pub id: String,
    #[sync(local_only, deleted)]
    pub draft: Option<String>,
    #[sync(updated_at)]
    pub modified: Option<String>,
    #[sync(updated_at)]
    pub modified_again: Option<String>,
    #[sync(version, rename = "etag")]
    pub version: Option<String>,
}

fn main() {}
