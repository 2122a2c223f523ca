use sync_runtime::SyncEntity;

#[derive(SyncEntity)]
#[sync(rename_all = "camelCase")]
pub struct TodoItem {
    pub id: String,
    pub version: Option<String>,
    pub updated_at: Option<String>,
    #[sync(rename = "Deleted")]
    pub gone: bool,
}

#[derive(SyncEntity)]
pub struct Tag {
    #[sync(id)]
    pub key: String,
    pub id: String,
}

fn main() {}
