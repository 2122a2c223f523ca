// Arithmetic keeps the column's type: a float operand on an integer column does not
// compile.
use sync_runtime::SyncEntity;

#[derive(SyncEntity)]
pub struct Todo {
    pub id: String,
    pub priority: i32,
}

fn main() {
    let _ = Todo::FIELDS.priority.add(1.5).eq(6);
}
