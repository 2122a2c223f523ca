// Date parts apply to timestamps only, and `mod` (`rem`) to integers only.
use sync_runtime::SyncEntity;

#[derive(SyncEntity)]
pub struct Todo {
    pub id: String,
    pub text: String,
    pub price: f64,
}

fn main() {
    let _ = Todo::FIELDS.text.year().eq(2026);
    let _ = Todo::FIELDS.price.rem(2.0).eq(1.0);
}
