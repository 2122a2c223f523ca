//! `todo demo`: a narrated walk-through of offline-first sync, all in this process: an
//! embedded server on 127.0.0.1 (a SQLite file in a temporary directory) and two
//! devices, A and B, each with its own store file. It ends by showing that both
//! devices and the server hold the same list, and fails if they do not.

use std::io::Write as _;

use serde_json::json;
use sync_runtime::{Query, SyncClient};

use crate::Ctx;
use crate::device::Device;
use crate::failure::{Failure, Result};
use crate::model::TodoItem;
use crate::output::{items_json, items_text, print_json};
use crate::status::{Side, settle, status_text};
use crate::sync::{self, Direction};

/// Where the story goes: stdout, or stderr when stdout carries `--json` output.
struct Narrator {
    json: bool,
    step: u32,
}

impl Narrator {
    fn say(&self, text: &str) {
        if self.json {
            eprint!("{text}");
        } else {
            print!("{text}");
            let _ = std::io::stdout().flush();
        }
    }

    fn line(&self, text: impl AsRef<str>) {
        self.say(&format!("{}\n", text.as_ref()));
    }

    fn step(&mut self, text: impl AsRef<str>) {
        self.step += 1;
        self.say(&format!("\n{}. {}\n", self.step, text.as_ref()));
    }

    async fn list(&self, label: &str, device: &Device) -> Result<()> {
        let items = device.items(true).await?;
        let marks = device.marks().await?;
        self.line(format!("   {label}:"));
        self.say(&items_text(&items, &marks, "     "));
        Ok(())
    }
}

/// One device of the story: its store and its client.
struct Phone {
    name: &'static str,
    device: Device,
    client: SyncClient,
}

impl Phone {
    async fn sync(&self, out: &Narrator) -> Result<sync::Outcome> {
        let outcome = sync::run(&self.device, &self.client, Direction::Both)
            .await
            .map_err(|e| Failure::from_sync(e, Some(self.client.base_url())))?;
        out.line(format!("   {} syncs: {}.", self.name, outcome.summary()));
        Ok(outcome)
    }

    async fn find_text(&self, text: &str) -> Result<TodoItem> {
        let mut found = self.device.todos.query().filter(TodoItem::FIELDS.text.eq(text)).all().await?;
        found.pop().ok_or_else(|| Failure::new("demo", format!("device {} has no item `{text}`", self.name)))
    }
}

/// `todo demo`.
pub async fn run(ctx: &Ctx) -> Result<()> {
    let dir = tempfile::Builder::new().prefix("todo-demo-").tempdir()?;
    let mut out = Narrator { json: ctx.json, step: 0 };
    out.line("The todo demo: two devices share a todo list through a sync server.");
    out.line("Each device keeps its own SQLite store, works offline, and syncs when it can.");

    let server = crate::serve::embedded(&dir.path().join("server.db")).await?;
    let url = server.url();
    out.step(format!("A sync server for TodoItem starts at {url} (protocol {}).", ctx.protocol));
    out.line(format!("   Its database and the devices' stores live in {}.", dir.path().display()));
    let mut phones = Vec::new();
    for name in ["A", "B"] {
        let device = Device::open(&dir.path().join(format!("device-{}.db", name.to_lowercase()))).await?;
        let client = device.client(&url, ctx.protocol, None)?;
        phones.push(Phone { name, device, client });
    }
    let (a, b) = (&phones[0], &phones[1]);

    out.step("Device A is offline and adds three items. They wait in its queue.");
    for text in ["buy milk", "call mum", "water the plants"] {
        a.device.todos.insert(TodoItem::new(text)).await?;
    }
    out.list("A", &a.device).await?;
    out.line(format!("   A has {} changes waiting to be pushed.", a.device.store.pending_count().await?));

    out.step("A comes online and syncs: it pushes its changes, then pulls every item.");
    a.sync(&out).await?;

    out.step("Device B syncs for the first time and receives the items.");
    b.sync(&out).await?;
    out.list("B", &b.device).await?;

    out.step("Both edit `buy milk` while apart: A writes `buy oat milk`, B writes `buy soy milk` and ticks it.");
    let mut on_a = a.find_text("buy milk").await?;
    on_a.text = "buy oat milk".into();
    a.device.todos.update(&on_a).await?;
    let mut on_b = b.find_text("buy milk").await?;
    on_b.text = "buy soy milk".into();
    on_b.complete = true;
    b.device.todos.update(&on_b).await?;
    a.sync(&out).await?;
    let outcome = b.sync(&out).await?;
    if outcome.conflicts != 1 {
        return Err(Failure::new("demo", format!("expected one conflict on B, got {outcome:?}")));
    }
    out.line("   The server already has A's edit, so it refuses B's (HTTP 412). `todo status` on B shows:");
    out.say(&indent(&status_text(&b.device).await?, "     "));

    out.step("B settles the conflict by keeping its own edit (`todo resolve ID --mine`) and syncs again;");
    out.line("   then A syncs and receives B's version.");
    settle(&b.device, &on_b.id, Side::Mine).await?;
    b.sync(&out).await?;
    a.sync(&out).await?;
    out.list("A", &a.device).await?;

    out.step("A removes `call mum`; the delete travels through the server to B.");
    let mum = a.find_text("call mum").await?;
    a.device.todos.delete(&mum.id).await?;
    a.sync(&out).await?;
    b.sync(&out).await?;

    out.step("The end: both devices and the server hold the same list.");
    let on_server = Device::in_memory().await?;
    let reader = on_server.client(&url, ctx.protocol, None)?;
    reader.pull(Query::<TodoItem>::new(), None).await.map_err(|e| Failure::from_sync(e, Some(&url)))?;
    out.list("device A", &a.device).await?;
    out.list("device B", &b.device).await?;
    out.list("server (a full pull into a fresh store)", &on_server).await?;
    let lists = [a.device.items_by_id().await?, b.device.items_by_id().await?, on_server.items_by_id().await?];
    let identical = lists[0] == lists[1] && lists[1] == lists[2];
    let pending = a.device.store.pending_count().await? + b.device.store.pending_count().await?;
    drop(phones);
    server.shutdown().await?;
    if !identical || pending > 0 {
        return Err(Failure::new("demo", "the devices and the server disagree; this is a bug, please report it"));
    }
    out.line("\n   Identical: same ids, texts, states and server versions everywhere.");
    if ctx.json {
        print_json(&json!({
            "devices": { "a": items_json(&lists[0]), "b": items_json(&lists[1]) },
            "server": items_json(&lists[2]),
            "identical": identical,
        }))?;
    }
    Ok(())
}

fn indent(text: &str, prefix: &str) -> String {
    text.lines().map(|line| format!("{prefix}{line}\n")).collect()
}
