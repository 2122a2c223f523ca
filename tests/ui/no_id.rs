use sync_runtime::SyncEntity;

#[derive(SyncEntity)]
pub struct TodoItem {
    pub key: String,
    pub text: String,
}

fn main() {}
