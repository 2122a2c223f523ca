// Every mistake of one struct is reported in one compile, and the fallback impl keeps
// the uses of the struct below from adding errors of their own.
use sync_runtime::{SyncEntity, query::Query};

#[derive(SyncEntity)]
#[sync(table = "Todo Item", colour = "red")]
pub struct TodoItem {
    pub key: String,
    #[sync(version)]
    pub etag: Option<String>,
    #[sync(version)]
    pub version2: Option<String>,
    #[sync(local_only, local_only)]
    pub draft: Option<String>,
    #[sync(rename = "createdAt")]
    pub created: Option<String>,
    #[sync(rename = "text")]
    pub body: String,
    pub text: String,
    #[sync(index = true)]
    pub list: String,
}

fn main() {
    let _ = Query::<TodoItem>::new().filter(TodoItem::FIELDS.text.eq("a"));
}
