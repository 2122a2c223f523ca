use sync_runtime::SyncEntity;

#[derive(SyncEntity)]
pub struct TodoItem(String, String);

#[derive(SyncEntity)]
pub struct Marker;

fn main() {}
