//! The judge of a reliability run: given what the clients did ([`Event`]s), what the
//! server saw (the proxies' [`Exchange`] journal), and where everyone ended, it checks
//!
//! 1. convergence: every client holds exactly the server's live rows, versions included;
//! 2. the journal explains the server: replaying its accepted writes gives the server's
//!    final rows (so no write reached the server unseen);
//! 3. no blind overwrite: every accepted update and delete carried an `If-Match` equal
//!    to the version it replaced;
//! 4. no duplicate: no text was accepted twice (a retried write applied again);
//! 5. nothing made up: every live text on the server is one a client wrote;
//! 6. no false conflict: no handler was shown a server side that is the client's own
//!    write (texts are unique, so equal texts mean a lost answer taken for a conflict,
//!    unless a "client wins" resend applied the text a second time);
//! 7. nothing acknowledged vanished: the last write of each client on each item was
//!    accepted by the server, or a later delete, a conflict decision or an error
//!    settlement that saw it explains why not (a discard after 404/410 only when the
//!    journal shows the item deleted on the server).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use crate::http1;
use crate::proxy::Exchange;
use crate::workload::{Decision, Event, Kind, RowState, Settle};

/// A server row, tombstones included.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerRow {
    /// The id.
    pub id: String,
    /// The text.
    pub text: String,
    /// Done or not.
    pub complete: bool,
    /// The version.
    pub version: String,
    /// A tombstone.
    pub deleted: bool,
}

impl ServerRow {
    fn from_json(j: &serde_json::Value) -> Option<ServerRow> {
        Some(ServerRow {
            id: j.get("id")?.as_str()?.to_owned(),
            text: j.get("text").and_then(|t| t.as_str()).unwrap_or_default().to_owned(),
            complete: j.get("complete").and_then(serde_json::Value::as_bool).unwrap_or(false),
            version: j.get("version").and_then(|v| v.as_str()).unwrap_or_default().to_owned(),
            deleted: j.get("deleted").and_then(serde_json::Value::as_bool).unwrap_or(false),
        })
    }

    /// The row as a client holds it.
    pub fn state(&self) -> RowState {
        RowState {
            id: self.id.clone(),
            text: self.text.clone(),
            complete: self.complete,
            version: Some(self.version.clone()),
        }
    }
}

/// Every `TodoItem` row of the server at `addr`, tombstones included, read directly (not
/// through a proxy), ordered by id.
pub async fn server_rows(addr: SocketAddr) -> Result<Vec<ServerRow>, String> {
    let mut rows = Vec::new();
    loop {
        let target = format!("/tables/TodoItem?__includedeleted=true&$orderby=id&$top=1000&$skip={}", rows.len());
        let req = http1::request("GET", &target, &[("zumo-api-version", "3.0.0")], None);
        let raw = http1::exchange(addr, &req, Duration::from_secs(30)).await.map_err(|e| e.to_string())?;
        let response = http1::parse_response(raw)?;
        let json = response.json().ok_or("the server's list is not JSON")?;
        if response.status() != 200 {
            return Err(format!("the server's list answered {}: {json}", response.status()));
        }
        let items = json.get("items").and_then(|i| i.as_array()).ok_or("no items")?;
        for item in items {
            rows.push(ServerRow::from_json(item).ok_or_else(|| format!("an unreadable server row {item}"))?);
        }
        if items.is_empty() || json.get("nextLink").is_none_or(serde_json::Value::is_null) {
            return Ok(rows);
        }
    }
}

/// What the checks counted (for the test's log).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Writes the server accepted.
    pub applied_writes: u64,
    /// Deletes without `If-Match`.
    pub blind_deletes: u64,
    /// Local writes checked.
    pub writes: u64,
    /// Conflicts handled.
    pub conflicts: u64,
    /// Error rows settled.
    pub settled: u64,
    /// Live rows at the end.
    pub live_rows: u64,
}

/// The version of a tombstone made by a v3 delete, which answers 204 without it.
const UNKNOWN_VERSION: &str = "<unknown: a v3 delete answers without the tombstone>";

fn item_id(ex: &Exchange) -> Option<String> {
    let path = ex.path();
    let rest = path.strip_prefix("/tables/TodoItem/")?;
    Some(percent_decode(rest))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(s.get(i + 1..i + 3).unwrap_or("zz"), 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn text_of(json: &Option<serde_json::Value>) -> Option<String> {
    json.as_ref().and_then(|j| j.get("text")).and_then(|t| t.as_str()).map(str::to_owned)
}

/// Runs every check; the error lists every problem found.
pub fn check(
    events: &[Event],
    journal: &[Exchange],
    server: &[ServerRow],
    clients: &[(usize, Vec<RowState>)],
) -> Result<Verdict, String> {
    let mut problems: Vec<String> = Vec::new();
    let mut verdict = Verdict::default();

    // 1. Convergence.
    let live: Vec<RowState> = server.iter().filter(|r| !r.deleted).map(ServerRow::state).collect();
    verdict.live_rows = live.len() as u64;
    for (client, rows) in clients {
        if *rows != live {
            let mine: BTreeSet<&RowState> = rows.iter().collect();
            let theirs: BTreeSet<&RowState> = live.iter().collect();
            let only_client: Vec<_> = mine.difference(&theirs).collect();
            let only_server: Vec<_> = theirs.difference(&mine).collect();
            problems.push(format!(
                "client {client} did not converge: only on the client {only_client:?}, only on the server {only_server:?}"
            ));
        }
    }

    // 2-4. Replay the journal.
    let mut replay: BTreeMap<String, ServerRow> = BTreeMap::new();
    let mut applied_texts: HashMap<String, Vec<(u64, String)>> = HashMap::new();
    let mut deleted_on_server: BTreeSet<String> = BTreeSet::new();
    // Items deleted on the server and later brought back (an insert of a deleted id:
    // the v2 undelete, or a v3 replace over the tombstone).
    let mut recreated: BTreeSet<String> = BTreeSet::new();
    for ex in journal.iter().filter(|e| e.is_applied_write()) {
        verdict.applied_writes += 1;
        let response = ex.response_json();
        match ex.method.as_str() {
            // v2's undelete (`POST /tables/{t}/{id}`), which brings a tombstone back before
            // an item deleted and created again is written over it.
            "POST" if item_id(ex).is_some() => {
                let Some(row) = response.as_ref().and_then(ServerRow::from_json) else {
                    problems.push(format!("journal {}: an accepted undelete without an item", ex.seq));
                    continue;
                };
                match replay.get(&row.id) {
                    Some(before)
                        if before.deleted
                            && (ex.if_match.as_ref() == Some(&before.version) || before.version == UNKNOWN_VERSION) => {
                    }
                    before => problems.push(format!(
                        "journal {}: undelete of {} accepted with If-Match {:?}, the server had {:?}",
                        ex.seq,
                        row.id,
                        ex.if_match,
                        before.map(|b| (&b.version, b.deleted))
                    )),
                }
                // It stays in `deleted_on_server`: the server did delete it once, which
                // explains a 404/410 met before it came back.
                recreated.insert(row.id.clone());
                replay.insert(row.id.clone(), row);
            }
            "POST" => {
                let Some(row) = response.as_ref().and_then(ServerRow::from_json) else {
                    problems.push(format!("journal {}: an accepted insert without an item: {ex:?}", ex.seq));
                    continue;
                };
                if replay.contains_key(&row.id) {
                    problems.push(format!("journal {}: insert of {} accepted over an existing row", ex.seq, row.id));
                }
                applied_texts.entry(row.text.clone()).or_default().push((ex.seq, row.id.clone()));
                replay.insert(row.id.clone(), row);
            }
            "PATCH" | "PUT" => {
                let Some(row) = response.as_ref().and_then(ServerRow::from_json) else {
                    problems.push(format!("journal {}: an accepted update without an item", ex.seq));
                    continue;
                };
                let before = replay.get(&row.id).map(|r| r.version.clone());
                if replay.get(&row.id).is_some_and(|r| r.deleted) && !row.deleted {
                    recreated.insert(row.id.clone());
                }
                let unknown = before.as_deref() == Some(UNKNOWN_VERSION);
                if ex.if_match.is_none() || (ex.if_match != before && !unknown) {
                    problems.push(format!(
                        "journal {} ({}): blind overwrite of {}: If-Match {:?}, the server had {before:?}",
                        ex.seq, ex.label, row.id, ex.if_match
                    ));
                }
                if let Some(text) = text_of(&ex.request_json()) {
                    applied_texts.entry(text).or_default().push((ex.seq, row.id.clone()));
                }
                replay.insert(row.id.clone(), row);
            }
            "DELETE" => {
                let Some(id) = item_id(ex) else {
                    problems.push(format!("journal {}: a delete of an unknown path {}", ex.seq, ex.target));
                    continue;
                };
                let Some(before) = replay.get(&id).cloned() else {
                    problems.push(format!("journal {}: delete of {id} accepted but the item never existed", ex.seq));
                    continue;
                };
                match &ex.if_match {
                    None => {
                        verdict.blind_deletes += 1;
                        problems.push(format!(
                            "journal {} ({}): blind delete of {id} (no If-Match), the server had {:?}",
                            ex.seq, ex.label, before.text
                        ));
                    }
                    Some(v) if *v != before.version => problems.push(format!(
                        "journal {}: delete of {id} accepted with If-Match {v}, the server had {}",
                        ex.seq, before.version
                    )),
                    Some(_) => {}
                }
                // A v3 delete answers 204 without the tombstone: its new version is unknown.
                let mut row = response
                    .as_ref()
                    .and_then(ServerRow::from_json)
                    .unwrap_or(ServerRow { version: UNKNOWN_VERSION.to_owned(), ..before });
                row.deleted = true;
                deleted_on_server.insert(id.clone());
                replay.insert(id, row);
            }
            _ => {}
        }
    }
    for (text, at) in &applied_texts {
        // Sending a write again is right only where a handler or the error policy saw the
        // server's side and chose the client's ("client wins" after a lost answer that
        // could not be proven, because the server moved on since).
        let chosen_again = events
            .iter()
            .filter(|e| match e {
                Event::Conflict { client_text, decision: Decision::Client, .. } => client_text == text,
                Event::Settled { client_text: Some(t), how: Settle::Retry, .. } => t == text,
                _ => false,
            })
            .count();
        if at.len() > 1 + chosen_again {
            problems.push(format!("the write `{text}` was applied {} times (a duplicate): {at:?}", at.len()));
        }
    }
    let actual: BTreeMap<&str, &ServerRow> = server.iter().map(|r| (r.id.as_str(), r)).collect();
    for (id, row) in &replay {
        match actual.get(id.as_str()) {
            None => problems.push(format!("the journal accepted {id} but the server does not have it")),
            Some(a) => {
                // A v3 delete answers 204: the tombstone's version is not in the journal.
                let same = a.deleted == row.deleted
                    && (row.deleted || (a.text == row.text && a.complete == row.complete && a.version == row.version));
                if !same {
                    problems.push(format!("replaying the journal gives {row:?}, the server has {a:?}"));
                }
            }
        }
    }
    for id in actual.keys() {
        if !replay.contains_key(*id) {
            problems.push(format!("the server has {id}, which no journaled write made"));
        }
    }

    // 5. Nothing made up.
    let written: BTreeSet<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Write { text: Some(t), .. } => Some(t.as_str()),
            _ => None,
        })
        .collect();
    for row in server.iter().filter(|r| !r.deleted) {
        if !written.contains(row.text.as_str()) {
            problems.push(format!("the server holds {row:?}, a text no client wrote"));
        }
    }

    // 6. No false conflict.
    for e in events {
        if let Event::Conflict { client, id, kind, status, client_text, server_text, .. } = e {
            verdict.conflicts += 1;
            // The same text on both sides is a lost answer taken for a conflict when it is
            // this client's own write, applied once. Not when another client's text came
            // back: a delete of an item that was changed and then restored by a
            // "client wins" resend of the same text (applied twice) is a real conflict.
            let own = events
                .iter()
                .any(|w| matches!(w, Event::Write { client: c, text: Some(t), .. } if c == client && t == client_text));
            let rewritten = applied_texts.get(client_text).is_some_and(|at| at.len() > 1);
            if client_text == server_text && own && !rewritten {
                problems.push(format!(
                    "client {client}: a false conflict on {id} ({kind:?}, HTTP {status}): the server's side is the client's own write `{client_text}`"
                ));
            }
        }
        if matches!(e, Event::Settled { .. }) {
            verdict.settled += 1;
        }
    }

    // 7. Nothing acknowledged vanished.
    let mut last: BTreeMap<(usize, &str), (usize, &Event)> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        if let Event::Write { client, id, .. } = e {
            verdict.writes += 1;
            last.insert((*client, id.as_str()), (i, e));
        }
    }
    let live_ids: BTreeSet<&str> = server.iter().filter(|r| !r.deleted).map(|r| r.id.as_str()).collect();
    for ((client, id), (at, write)) in &last {
        let Event::Write { kind, text, seen_version, .. } = write else { continue };
        let later = &events[*at..];
        let explained_by = |kind_filter: Option<Kind>| {
            later.iter().find(|e| match e {
                Event::Conflict { client: c, id: i, kind: k, client_text, decision, .. } => {
                    c == client
                        && i == id
                        && kind_filter.is_none_or(|kf| kf == *k)
                        && (text.is_none() || text.as_deref() == Some(client_text.as_str()))
                        && matches!(decision, Decision::Server | Decision::Merge)
                }
                Event::Settled { client: c, id: i, kind: k, client_text, how, .. } => {
                    c == client
                        && i == id
                        && kind_filter.is_none_or(|kf| kf == *k)
                        && (text.is_none() || client_text.as_deref() == text.as_deref())
                        && matches!(how, Settle::TakeServer | Settle::Discard)
                }
                _ => false,
            })
        };
        match (kind, text) {
            // A delete of a row that never reached the server only cancels the client's
            // own insert: an item of that id made by another client is not its target.
            (Kind::Delete, _) if seen_version.is_none() => {}
            (Kind::Delete, _) => {
                // Deleted on the server, then created again (by an insert of the same id):
                // the delete happened.
                let deleted_then_recreated = deleted_on_server.contains(*id) && recreated.contains(*id);
                if live_ids.contains(id) && explained_by(Some(Kind::Delete)).is_none() && !deleted_then_recreated {
                    problems.push(format!(
                        "client {client}: its delete of {id} vanished: the item is live on the server and no conflict decision explains it"
                    ));
                }
            }
            (_, Some(text)) => {
                if applied_texts.contains_key(text) {
                    continue;
                }
                match explained_by(None) {
                    Some(Event::Settled { how: Settle::Discard, .. }) if !deleted_on_server.contains(*id) => {
                        problems.push(format!(
                            "client {client}: its write `{text}` on {id} was discarded after a 404/410, but the server never deleted {id}"
                        ));
                    }
                    Some(_) => {}
                    None => problems.push(format!(
                        "client {client}: its acknowledged {kind:?} `{text}` of {id} vanished: never applied, and no conflict decision or later delete explains it"
                    )),
                }
            }
            (_, None) => problems.push(format!("client {client}: a write of {id} without a text")),
        }
    }

    if problems.is_empty() {
        Ok(verdict)
    } else {
        let shown: Vec<&String> = problems.iter().take(25).collect();
        let more = if problems.len() > 25 { format!("\n... and {} more", problems.len() - 25) } else { String::new() };
        // The story of the items named in the first problems, to debug from the message.
        let mut ids: Vec<&str> = Vec::new();
        for p in problems.iter().take(3) {
            for word in p.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.')) {
                let is_id = word.len() > 1 && word.starts_with('k') && word[1..].chars().all(|c| c.is_ascii_digit());
                if is_id && !ids.contains(&word) {
                    ids.push(word);
                }
            }
        }
        let stories: Vec<String> = ids.iter().map(|id| history(events, journal, id)).collect();
        Err(format!(
            "{} problem(s):\n{}{more}\n\n{}",
            problems.len(),
            shown.iter().map(|p| format!("- {p}")).collect::<Vec<_>>().join("\n"),
            stories.join("\n")
        ))
    }
}

/// Everything the events and the journal say about one item, in order: for failure
/// messages.
pub fn history(events: &[Event], journal: &[Exchange], id: &str) -> String {
    let mut out = format!("history of {id}:\n  events:\n");
    for (i, e) in events.iter().enumerate().filter(|(_, e)| e.id() == id) {
        out.push_str(&format!("    #{i} {}\n", serde_json::to_string(e).unwrap_or_default()));
    }
    out.push_str("  server exchanges:\n");
    let path = format!("/tables/TodoItem/{id}");
    for ex in journal {
        let about = ex.path() == path
            || (ex.method == "POST" && ex.request_json().and_then(|j| j.get("id").cloned()) == Some(id.into()));
        if about {
            out.push_str(&format!(
                "    [{}] {} {} {} if-match {:?} sent {} -> {} {} (client got: {:?})\n",
                ex.seq,
                ex.label,
                ex.method,
                ex.target,
                ex.if_match,
                String::from_utf8_lossy(&ex.request_body),
                ex.status,
                String::from_utf8_lossy(&ex.response_body),
                ex.fault
            ));
        }
    }
    out
}
