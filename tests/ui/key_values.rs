use sync_runtime::SyncEntity;

#[derive(SyncEntity)]
#[sync(table, rename_all = 5, crate = "not a path")]
pub struct TodoItem {
    #[sync(id = "key")]
    pub id: String,
    #[sync(rename)]
    pub text: String,
    #[sync(rename("body"))]
    pub body: String,
    #[sync(local_only(true))]
    pub draft: Option<String>,
}

#[derive(SyncEntity)]
#[sync = "Other"]
pub struct Other {
    pub id: String,
}

fn main() {}
