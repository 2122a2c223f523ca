use sync_runtime::SyncEntity;

#[derive(SyncEntity)]
#[sync(table = "__sync_items")]
pub struct Reserved {
    pub id: String,
}

#[derive(SyncEntity)]
#[sync(table = "")]
pub struct Empty {
    pub id: String,
    #[sync(rename = "due-at")]
    pub due: String,
    #[sync(rename = "1st")]
    pub first: String,
    pub café: String,
}

#[derive(SyncEntity)]
pub struct Columns {
    pub id: String,
    pub text: String,
    #[sync(rename = "TEXT")]
    pub other_text: String,
}

fn main() {}
