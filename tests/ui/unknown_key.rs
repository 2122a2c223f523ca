use sync_runtime::SyncEntity;

#[derive(SyncEntity)]
#[sync(tabel = "TodoItem")]
pub struct TodoItem {
    pub id: String,
    #[sync(renamed = "body")]
    pub text: String,
    #[sync(table = "Other")]
    pub note: String,
}

#[derive(SyncEntity)]
#[sync(rename = "Other", index)]
pub struct Other {
    pub id: String,
}

fn main() {}
