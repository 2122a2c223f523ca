use sync_runtime::SyncEntity;

#[derive(SyncEntity)]
pub union Bits {
    pub int: i64,
    pub float: f64,
}

fn main() {}
