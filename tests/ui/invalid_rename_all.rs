use sync_runtime::SyncEntity;

#[derive(SyncEntity)]
#[sync(rename_all = "kebab-case")]
pub struct TodoItem {
    pub id: String,
    pub due_at: String,
}

fn main() {}
