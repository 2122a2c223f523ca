use sync_runtime::SyncEntity;

#[derive(SyncEntity)]
pub struct TodoItem {
    #[sync(id)]
    pub key: String,
    #[sync(id)]
    pub other_key: String,
    pub text: String,
}

fn main() {}
