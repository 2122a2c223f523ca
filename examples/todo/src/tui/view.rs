//! Drawing the terminal UI: title, list, input line, status bar, key help.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, Paragraph};

use super::App;
use crate::sync::plural;

const SPINNER: [&str; 4] = ["|", "/", "-", "\\"];

/// Draws the whole screen.
pub fn draw(frame: &mut Frame<'_>, app: &mut App) {
    let [title, list, input, status, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());

    let done = app.items.iter().filter(|i| i.complete).count() as u64;
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(" todo ", Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED)),
            Span::raw(format!(" {}, {done} done · {}", plural(app.items.len() as u64, "item"), app.server_label)),
        ])),
        title,
    );

    let rows: Vec<ListItem<'_>> = if app.items.is_empty() {
        vec![ListItem::new("  nothing to do: press `a` to add an item")]
    } else {
        app.items
            .iter()
            .map(|item| {
                let mark = if item.complete { "[x]" } else { "[ ]" };
                let note = app.marks.get(&item.id).map(|m| format!("  ({m})")).unwrap_or_default();
                let style = if item.complete { Style::new().add_modifier(Modifier::DIM) } else { Style::new() };
                ListItem::new(Line::from(vec![
                    Span::raw(format!("{mark} ")),
                    Span::styled(item.text.clone(), style),
                    Span::styled(note, Style::new().add_modifier(Modifier::ITALIC)),
                ]))
            })
            .collect()
    };
    let widget = List::new(rows)
        .block(Block::new().borders(Borders::ALL).title(" Items "))
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ");
    frame.render_stateful_widget(widget, list, &mut app.list);

    let line = match (&app.input, &app.notice) {
        (Some(text), _) => Line::from(vec![
            Span::styled(" New item: ", Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(text.clone()),
            Span::styled("_", Style::new().add_modifier(Modifier::SLOW_BLINK)),
            Span::raw("   (enter to add, esc to cancel)"),
        ]),
        (None, Some(notice)) => Line::from(format!(" {notice}")),
        (None, None) => Line::default(),
    };
    frame.render_widget(Paragraph::new(line), input);

    frame.render_widget(Paragraph::new(status_text(app)).style(Style::new().add_modifier(Modifier::REVERSED)), status);
    frame.render_widget(
        Paragraph::new(" a add · space/enter toggle · d delete · s sync now · up/down move · q quit"),
        help,
    );
}

/// The status bar: online or offline, pending changes, changes to settle, then the
/// sync under way or the last one.
fn status_text(app: &App) -> String {
    let status = &app.status;
    let online = if status.connected {
        "online"
    } else if status.connecting {
        "connecting"
    } else {
        "offline"
    };
    let mut text = format!(" {online} │ pending: {}", app.pending);
    if status.errors > 0 {
        text.push_str(&format!(" │ to settle: {} (see `todo status`)", status.errors));
    }
    let sync = match (&app.syncing, status.last_synced_at) {
        (Some(since), _) => {
            let frame = (since.elapsed().as_millis() / 250) as usize % SPINNER.len();
            format!("syncing… {}", SPINNER[frame])
        }
        (None, None) => "last sync: never".to_owned(),
        (None, Some(at)) => {
            let ago = at.elapsed().map_or(0, |d| d.as_secs());
            format!("last sync: {ago}s ago")
        }
    };
    text.push_str(&format!(" │ {sync}"));
    if let Some(error) = &status.last_error {
        text.push_str(&format!(" │ {error}"));
    }
    text
}
