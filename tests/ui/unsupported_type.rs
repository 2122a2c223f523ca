use std::collections::HashMap;

use sync_runtime::SyncEntity;

#[derive(SyncEntity)]
pub struct TodoItem {
    pub id: String,
    pub tags: HashMap<String, String>,
    pub count: u64,
}

fn main() {}
