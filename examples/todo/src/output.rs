//! What commands print: one JSON document on stdout with `--json`, text otherwise.

use std::collections::HashMap;
use std::io::Write as _;

use serde::Serialize;

use crate::device::short_ids;
use crate::failure::{Failure, Result};
use crate::model::{ItemJson, TodoItem};

/// Prints one JSON document and a newline on stdout.
pub fn print_json(value: &impl Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value).map_err(|e| Failure::new("io", e.to_string()))?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// The items as JSON: an array of `{id, text, complete, version, updatedAt}`.
pub fn items_json(items: &[TodoItem]) -> Vec<ItemJson> {
    items.iter().map(TodoItem::to_json).collect()
}

/// The items as text lines: `  [x] <short id>  <text>  (<mark>)`, indented by
/// `indent`; `marks` says which items are not synced or in conflict.
pub fn items_text(items: &[TodoItem], marks: &HashMap<String, &'static str>, indent: &str) -> String {
    if items.is_empty() {
        return format!("{indent}(no items)\n");
    }
    let ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
    let short = short_ids(&ids, 8);
    let width = short.iter().map(String::len).max().unwrap_or(0);
    let mut text = String::new();
    for (item, id) in items.iter().zip(&short) {
        let mark = if item.complete { "[x]" } else { "[ ]" };
        let note = marks.get(&item.id).map(|m| format!("  ({m})")).unwrap_or_default();
        text.push_str(&format!("{indent}{mark} {id:<width$}  {}{note}\n", item.text));
    }
    text
}
