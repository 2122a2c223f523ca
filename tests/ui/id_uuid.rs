use sync_runtime::SyncEntity;
use sync_runtime::uuid::Uuid;

#[derive(SyncEntity)]
pub struct Device {
    pub id: Uuid,
    pub name: String,
}

fn main() {}
