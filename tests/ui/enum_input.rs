use sync_runtime::SyncEntity;

#[derive(SyncEntity)]
pub enum Status {
    Open,
    Done,
}

fn main() {}
