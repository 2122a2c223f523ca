//! The state of the terminal UI and what keys do to it.

use std::collections::HashMap;
use std::time::Instant;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::widgets::ListState;
use sync_runtime::{SyncEngine, SyncStatus};

use super::Event;
use crate::device::Device;
use crate::failure::Failure;
use crate::model::TodoItem;

/// The UI's state.
#[derive(Debug)]
pub struct App {
    device: Device,
    engine: Option<SyncEngine>,
    /// Where syncs go, for the title line.
    pub server_label: String,
    /// Every item, ordered by text.
    pub items: Vec<TodoItem>,
    /// Notes beside items that are not in sync.
    pub marks: HashMap<String, &'static str>,
    /// The selected row.
    pub list: ListState,
    /// The text being typed after `a`.
    pub input: Option<String>,
    /// Queued local changes.
    pub pending: u64,
    /// The sync engine's status.
    pub status: SyncStatus,
    /// Since when the engine sends or receives.
    pub syncing: Option<Instant>,
    /// A message about the last key's action (an error, usually).
    pub notice: Option<String>,
    /// Set by `q`.
    pub quit: bool,
    /// The item to select once the list shows it (one just added).
    select_when_shown: Option<String>,
}

impl App {
    /// A UI on a device and its sync engine.
    pub fn new(device: Device, engine: SyncEngine, server_label: String) -> App {
        App {
            device,
            status: engine.status(),
            engine: Some(engine),
            server_label,
            items: Vec::new(),
            marks: HashMap::new(),
            list: ListState::default(),
            input: None,
            pending: 0,
            syncing: None,
            notice: None,
            quit: false,
            select_when_shown: None,
        }
    }

    /// Shows the items a watch yielded, keeping the selection on the same item (or
    /// moving it to one just added).
    fn show_items(&mut self, items: Vec<TodoItem>) {
        let selected = self.select_when_shown.take().or_else(|| self.selected().map(|item| item.id.clone()));
        self.items = items;
        let index = selected
            .and_then(|id| self.items.iter().position(|item| item.id == id))
            .or(self.list.selected())
            .map(|i| i.min(self.items.len().saturating_sub(1)));
        self.list.select(if self.items.is_empty() { None } else { Some(index.unwrap_or(0)) });
    }

    /// The selected item.
    pub fn selected(&self) -> Option<&TodoItem> {
        self.list.selected().and_then(|i| self.items.get(i))
    }

    /// Reacts to one event.
    pub async fn handle(&mut self, event: Event) {
        match event {
            Event::Key(key) => self.key(key).await,
            Event::Resize => {}
            Event::Status(status) => {
                let busy = status.uploading || status.downloading;
                if busy != self.syncing.is_some() {
                    self.syncing = busy.then(Instant::now);
                }
                self.status = status;
            }
            Event::Items(Ok(items)) => self.show_items(items),
            Event::Pending(n) => self.pending = n,
            Event::Marks(marks) => self.marks = marks,
            Event::Items(Err(message)) => self.notice = Some(message),
        }
    }

    async fn key(&mut self, key: KeyEvent) {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.quit = true;
            return;
        }
        if let Some(input) = &mut self.input {
            match key.code {
                KeyCode::Enter => {
                    let text = input.trim().to_owned();
                    self.input = None;
                    if !text.is_empty() {
                        self.write(Write::Add(text)).await;
                    }
                }
                KeyCode::Esc => self.input = None,
                KeyCode::Backspace => {
                    input.pop();
                }
                KeyCode::Char(c) => input.push(c),
                _ => {}
            }
            return;
        }
        self.notice = None;
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => self.quit = true,
            KeyCode::Char('a') => self.input = Some(String::new()),
            KeyCode::Char(' ') | KeyCode::Enter => {
                if let Some(item) = self.selected().cloned() {
                    self.write(Write::Toggle(item)).await;
                }
            }
            KeyCode::Char('d') | KeyCode::Delete => {
                if let Some(item) = self.selected().cloned() {
                    self.write(Write::Delete(item.id)).await;
                }
            }
            KeyCode::Char('s') => {
                if let Some(engine) = &self.engine {
                    engine.sync_now();
                }
            }
            KeyCode::Up | KeyCode::Char('k') => self.list.select_previous(),
            KeyCode::Down | KeyCode::Char('j') if self.list.selected().is_some_and(|i| i + 1 < self.items.len()) => {
                self.list.select_next();
            }
            KeyCode::Home | KeyCode::Char('g') => self.list.select_first(),
            KeyCode::End | KeyCode::Char('G') if !self.items.is_empty() => {
                self.list.select(Some(self.items.len() - 1));
            }
            _ => {}
        }
    }

    async fn write(&mut self, write: Write) {
        let todos = &self.device.todos;
        let result = match write {
            Write::Add(text) => todos.insert(TodoItem::new(text)).await.map(|item| {
                // The list's watch shows it in a moment: select it then.
                self.select_when_shown = Some(item.id);
            }),
            Write::Toggle(mut item) => {
                item.complete = !item.complete;
                todos.update(&item).await
            }
            Write::Delete(id) => todos.delete(&id).await,
        };
        if let Err(e) = result {
            self.notice = Some(Failure::from(e).message);
        }
    }

    /// Stops the sync engine, its request in flight recorded.
    pub async fn stop(&mut self) -> sync_runtime::Result<()> {
        match self.engine.take() {
            Some(engine) => engine.stop().await,
            None => Ok(()),
        }
    }
}

/// A local change made from the UI.
enum Write {
    Add(String),
    Toggle(TodoItem),
    Delete(String),
}
