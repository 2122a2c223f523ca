//! The terminal UI (`todo` with no command): the list, keys to add, toggle and delete,
//! and a status bar with the sync engine's status (online or offline, pending changes,
//! changes to settle, the last sync).
//!
//! The sync engine runs in the background: local changes go out by themselves, and
//! another device's changes come in on the engine's next pull (`s` pulls now). Keys are
//! read on their own thread and arrive on one channel with what the watches of the
//! store and the engine's status yield, so the screen redraws itself whenever the data
//! changes: after a key, a sync, or a write by another process (`todo add` in another
//! terminal). With no `--server`, an embedded server starts on 127.0.0.1 with its
//! database beside the store (`<store>.server.db`), so what was synced is still there
//! next time.

mod app;
mod view;

use std::path::{Path, PathBuf};
use std::time::Duration;

use ratatui::crossterm::event::{self, Event as TermEvent, KeyEventKind};
use tokio::sync::mpsc;

use crate::Ctx;
use crate::failure::{Failure, Result};

pub use app::App;

/// What the loop reacts to.
#[derive(Debug)]
pub enum Event {
    /// A key press.
    Key(event::KeyEvent),
    /// The terminal changed size.
    Resize,
    /// The sync engine's status changed.
    Status(sync_runtime::SyncStatus),
    /// The list changed (from its watch), or could not be read.
    Items(std::result::Result<Vec<crate::model::TodoItem>, String>),
    /// The number of queued changes changed.
    Pending(u64),
    /// The marks beside items that are not in sync changed.
    Marks(std::collections::HashMap<String, &'static str>),
}

/// How often the engine pulls when the server has no change feed.
const POLL: Duration = Duration::from_secs(5);

/// The embedded server's database for a store file: `<name>.server.db` beside it.
fn embedded_server_path(store: &Path) -> PathBuf {
    let stem = store.file_stem().map_or_else(|| "todo".into(), |s| s.to_string_lossy().into_owned());
    store.with_file_name(format!("{stem}.server.db"))
}

/// Runs the terminal UI until `q`.
pub async fn run(ctx: &Ctx) -> Result<()> {
    let store_path = ctx.store_path()?;
    let device = crate::device::Device::open(&store_path).await?;
    let (embedded, url, label) = match &ctx.server {
        Some(url) => (None, url.clone(), format!("server {url} ({})", ctx.protocol)),
        None => {
            let handle = crate::serve::embedded(&embedded_server_path(&store_path)).await?;
            let url = handle.url();
            let label = format!("embedded server {url} ({})", ctx.protocol);
            (Some(handle), url, label)
        }
    };
    let client = device.client(&url, ctx.protocol, None)?;
    let engine = crate::sync::start_engine(&client, POLL)?;
    let (tx, rx) = mpsc::unbounded_channel();
    watch_store(&device, &tx);
    let mut statuses = engine.statuses();
    let events = tx.clone();
    tokio::spawn(async move {
        while let Some(status) = statuses.next().await {
            if events.send(Event::Status(status)).is_err() {
                break;
            }
        }
    });
    let mut app = App::new(device, engine, label);

    spawn_input_thread(tx);
    let mut terminal =
        ratatui::try_init().map_err(|e| Failure::new("terminal", format!("cannot set up the terminal: {e}")))?;
    let result = event_loop(&mut terminal, &mut app, rx).await;
    ratatui::restore();
    // The engine stops with its request in flight recorded, then the server goes.
    if let Err(e) = app.stop().await {
        tracing::warn!(error = %e, "the sync engine did not stop cleanly");
    }
    if let Some(handle) = embedded {
        let _ = tokio::time::timeout(Duration::from_secs(5), handle.shutdown()).await;
    }
    result
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    app: &mut App,
    mut rx: mpsc::UnboundedReceiver<Event>,
) -> Result<()> {
    // Redraws the spinner and the "3 s ago" of the status bar.
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !app.quit {
        terminal
            .draw(|frame| view::draw(frame, app))
            .map_err(|e| Failure::new("terminal", format!("cannot draw: {e}")))?;
        tokio::select! {
            event = rx.recv() => match event {
                Some(event) => app.handle(event).await,
                None => break,
            },
            _ = tick.tick() => {}
        }
    }
    Ok(())
}

/// Forwards what the screen shows, from watches of the store, to the loop: the list,
/// the pending count, and the marks (read again when the queue or the error table
/// changes). The tasks end when the loop is gone.
fn watch_store(device: &crate::device::Device, tx: &mpsc::UnboundedSender<Event>) {
    let mut items = device.items_query(true).watch();
    let events = tx.clone();
    tokio::spawn(async move {
        while let Some(result) = items.next().await {
            let event = Event::Items(result.map_err(|e| Failure::from(e).message));
            if events.send(event).is_err() {
                break;
            }
        }
    });
    let mut pending = device.store.watch_pending_count();
    let events = tx.clone();
    tokio::spawn(async move {
        while let Some(result) = pending.next().await {
            if events.send(Event::Pending(result.unwrap_or(0))).is_err() {
                break;
            }
        }
    });
    let mut changes = device.store.changes();
    let (device, events) = (device.clone(), tx.clone());
    tokio::spawn(async move {
        let mut stale = true;
        loop {
            if stale {
                let marks = device.marks().await.unwrap_or_default();
                if events.send(Event::Marks(marks)).is_err() {
                    break;
                }
            }
            let Some(change) = changes.next().await else { break };
            stale = change.queue_changed() || change.errors_changed();
        }
    });
}

/// Reads terminal events on a thread of its own (crossterm's `read` blocks) and sends
/// key presses and resizes to the loop. The thread ends with the process.
fn spawn_input_thread(tx: mpsc::UnboundedSender<Event>) {
    std::thread::spawn(move || {
        loop {
            let event = match event::read() {
                Ok(TermEvent::Key(key)) if key.kind == KeyEventKind::Press => Event::Key(key),
                Ok(TermEvent::Resize(..)) => Event::Resize,
                Ok(_) => continue,
                Err(_) => break,
            };
            if tx.send(event).is_err() {
                break;
            }
        }
    });
}
