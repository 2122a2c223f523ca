//! The state of the terminal UI and what keys do to it.

use std::collections::HashMap;
use std::time::Instant;

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::widgets::ListState;
use sync_runtime::SyncClient;
use tokio::sync::mpsc;

use super::Event;
use crate::device::Device;
use crate::failure::Failure;
use crate::model::TodoItem;
use crate::sync::{self, Direction, Outcome};

/// How the last sync ended, and when.
#[derive(Debug)]
pub struct LastSync {
    /// When it ended.
    pub at: Instant,
    /// Its outcome, or the message of its failure.
    pub result: Result<Outcome, String>,
}

/// The UI's state.
#[derive(Debug)]
pub struct App {
    device: Device,
    client: SyncClient,
    events: mpsc::UnboundedSender<Event>,
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
    /// Since when a sync runs.
    pub syncing: Option<Instant>,
    /// The last sync.
    pub last_sync: Option<LastSync>,
    /// A message about the last key's action (an error, usually).
    pub notice: Option<String>,
    /// Set by `q`.
    pub quit: bool,
    /// The item to select once the list shows it (one just added).
    select_when_shown: Option<String>,
}

impl App {
    /// A UI on a device and its client; `events` receives sync results.
    pub fn new(device: Device, client: SyncClient, server_label: String, events: mpsc::UnboundedSender<Event>) -> App {
        App {
            device,
            client,
            events,
            server_label,
            items: Vec::new(),
            marks: HashMap::new(),
            list: ListState::default(),
            input: None,
            pending: 0,
            syncing: None,
            last_sync: None,
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
            Event::SyncDone(result) => {
                self.syncing = None;
                self.last_sync = Some(LastSync { at: Instant::now(), result });
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
            KeyCode::Char('s') => self.start_sync(),
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

    /// Starts a sync in the background, unless one runs.
    fn start_sync(&mut self) {
        if self.syncing.is_some() {
            return;
        }
        self.syncing = Some(Instant::now());
        let (device, client, events) = (self.device.clone(), self.client.clone(), self.events.clone());
        tokio::spawn(async move {
            let result = sync::run(&device, &client, Direction::Both)
                .await
                .map_err(|e| Failure::from_sync(e, Some(client.base_url().trim_end_matches('/'))).message);
            let _ = events.send(Event::SyncDone(result));
        });
    }
}

/// A local change made from the UI.
enum Write {
    Add(String),
    Toggle(TodoItem),
    Delete(String),
}
