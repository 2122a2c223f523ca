//! Another process writing to a store file, for the live tests
//! (`tests/tests/live.rs`): opens the store at `<path>`, inserts a `TodoItem` with id
//! `<id>` and text `<text>` (blocking API, no async runtime), and exits 0.
//!
//! Usage: `store_writer <path> <id> <text>`

use sync_runtime::Store;
use sync_tests::TodoItem;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, id, text] = args.as_slice() else {
        eprintln!("usage: store_writer <path> <id> <text>");
        std::process::exit(2);
    };
    let store = Store::open(path).wait().expect("open the store");
    let todos = store.table::<TodoItem>().wait().expect("the table");
    todos.insert(TodoItem::new(id, text)).wait().expect("insert");
    store.close().wait().expect("close");
}
