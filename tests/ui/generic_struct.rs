use sync_runtime::SyncEntity;

#[derive(SyncEntity)]
pub struct Tagged<T> {
    pub id: String,
    pub tag: T,
}

#[derive(SyncEntity)]
pub struct Borrowed<'a> {
    pub id: String,
    pub text: &'a str,
}

fn main() {}
