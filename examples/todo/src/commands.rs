//! The local commands: `add`, `list`, `done`, `undone`, `edit`, `rm`. They work offline;
//! each change waits in the store's queue until `todo sync` sends it.

use serde_json::json;

use crate::Ctx;
use crate::failure::{Exit, Failure, Result};
use crate::model::TodoItem;
use crate::output::{items_json, items_text, print_json};

fn join_text(words: &[String]) -> Result<String> {
    let text = words.join(" ").trim().to_owned();
    if text.is_empty() {
        return Err(Failure::new("usage", "the text is empty").exit(Exit::Usage));
    }
    Ok(text)
}

/// `todo add TEXT...`: prints the new item's id.
pub async fn add(ctx: &Ctx, words: &[String]) -> Result<()> {
    let text = join_text(words)?;
    let device = ctx.device().await?;
    let item = device.todos.insert(TodoItem::new(text)).await?;
    if ctx.json {
        print_json(&json!({ "id": item.id }))
    } else {
        println!("{}", item.id);
        Ok(())
    }
}

/// `todo list [--all]`.
pub async fn list(ctx: &Ctx, all: bool) -> Result<()> {
    let device = ctx.device().await?;
    let items = device.items(all).await?;
    if ctx.json {
        return print_json(&items_json(&items));
    }
    let marks = device.marks().await?;
    print!("{}", items_text(&items, &marks, ""));
    Ok(())
}

/// `todo done ID` / `todo undone ID`.
pub async fn set_complete(ctx: &Ctx, id: &str, complete: bool) -> Result<()> {
    let device = ctx.device().await?;
    let mut item = device.find(id).await?;
    let changed = item.complete != complete;
    if changed {
        item.complete = complete;
        device.todos.update(&item).await?;
    }
    if ctx.json {
        return print_json(&item.to_json());
    }
    let state = if complete { "done" } else { "not done" };
    if changed {
        println!("{state}: {}", item.text);
    } else {
        println!("already {state}: {}", item.text);
    }
    Ok(())
}

/// `todo edit ID TEXT...`.
pub async fn edit(ctx: &Ctx, id: &str, words: &[String]) -> Result<()> {
    let text = join_text(words)?;
    let device = ctx.device().await?;
    let mut item = device.find(id).await?;
    if item.text != text {
        item.text = text;
        device.todos.update(&item).await?;
    }
    if ctx.json {
        return print_json(&item.to_json());
    }
    println!("edited: {}", item.text);
    Ok(())
}

/// `todo rm ID`.
pub async fn remove(ctx: &Ctx, id: &str) -> Result<()> {
    let device = ctx.device().await?;
    let item = device.find(id).await?;
    device.todos.delete(&item.id).await?;
    if ctx.json {
        return print_json(&json!({ "id": item.id }));
    }
    println!("removed: {}", item.text);
    Ok(())
}
