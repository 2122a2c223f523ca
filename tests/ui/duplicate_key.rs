use sync_runtime::SyncEntity;

#[derive(SyncEntity)]
#[sync(table = "TodoItem", table = "Todo")]
pub struct TodoItem {
    pub id: String,
    #[sync(rename = "a", rename = "b")]
    pub text: String,
    #[sync(index)]
    #[sync(index)]
    pub note: String,
}

fn main() {}
