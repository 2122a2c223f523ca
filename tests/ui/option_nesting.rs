use sync_runtime::SyncEntity;

#[derive(SyncEntity)]
pub struct Profile {
    pub id: String,
    pub nickname: Option<Option<String>>,
    pub avatar: Option<Box<Vec<u8>>>,
    pub age: Option<u8>,
}

fn main() {}
