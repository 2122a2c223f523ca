//! `GET /feed`: the handler, and the stream of one subscriber's events (framed by axum's
//! `sse`, which also writes the heartbeats).

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Serialize;

use crate::auth::Caller;
use crate::connections::StreamingConnection;
use crate::feed::hub::{Hub, Refused, Subscription};
use crate::preamble::QueryPairs;
use crate::problem::ApiError;
use crate::state::AppState;

/// `GET /feed[?tables=A,B]`: subscribes the caller to the tables (every table when the
/// parameter is absent) and streams its events (see the module docs of `feed`).
pub(crate) async fn feed(
    State(state): State<Arc<AppState>>,
    QueryPairs(pairs): QueryPairs,
    Extension(caller): Extension<Caller>,
    connection: Option<Extension<StreamingConnection>>,
) -> Result<Response, ApiError> {
    let Some(hub) = &state.feed else {
        return Err(ApiError::not_found("this server has no change feed"));
    };
    let settings = state.feed_settings;
    let tables = match pairs.iter().find(|(name, _)| name == "tables") {
        None => hub.all_tables(),
        Some((_, list)) => {
            let mut tables = BTreeSet::new();
            for name in list.split(',').map(str::trim).filter(|name| !name.is_empty()) {
                let table = state.table(name)?;
                let index = hub.index(&table.name).ok_or_else(|| ApiError::not_found("the feed has no such table"))?;
                tables.insert(index);
            }
            if tables.is_empty() {
                return Err(ApiError::bad_request("`tables` names no table; leave it out for every table"));
            }
            tables.into_iter().collect()
        }
    };
    for &table in &tables {
        if state.table(hub.name(table))?.owner_column.is_some() && caller.user.is_none() {
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, "this table needs an authenticated caller"));
        }
    }
    let subscription = match hub.subscribe(tables.clone(), caller.user) {
        Ok(subscription) => subscription,
        Err(refused) => {
            let (message, retry) = match refused {
                Refused::Full => ("the change feed has all the subscribers it takes; retry later", settings.heartbeat),
                Refused::Closed => ("the server is shutting down", Duration::from_secs(1)),
            };
            tracing::warn!(?refused, "feed subscription refused");
            let mut response = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message).into_response();
            let seconds = retry.as_secs().max(1) + u64::from(retry.subsec_nanos() > 0);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            return Ok(response);
        }
    };
    let connection = connection.map(|Extension(connection)| connection);
    if let Some(connection) = &connection {
        connection.start(settings.stall_timeout);
    }
    let names: Vec<&str> = tables.iter().map(|&t| hub.name(t)).collect();
    let heartbeat = settings.heartbeat;
    // Whole seconds as an integer (`15`), else a fraction (`0.25`).
    let heartbeat_seconds = match heartbeat.subsec_nanos() {
        0 => serde_json::Value::from(heartbeat.as_secs()),
        _ => serde_json::Value::from(heartbeat.as_secs_f64()),
    };
    let ready = serde_json::to_string(&Ready { tables: &names, heartbeat_seconds })
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "cannot serialize the answer"))?;
    let events = Events {
        ready: Some(Event::default().event("ready").data(ready)),
        hub: Arc::clone(hub),
        subscription,
        connection,
        gap: Box::pin(tokio::time::sleep(Duration::ZERO)),
        pacing: false,
    };
    let mut response =
        Sse::new(events).keep_alive(KeepAlive::new().interval(heartbeat).text("heartbeat")).into_response();
    // Proxies that buffer answers (nginx) pass this one through as it comes.
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// The `ready` event's data.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Ready<'a> {
    tables: &'a [&'a str],
    heartbeat_seconds: serde_json::Value,
}

/// The `change` event's data.
#[derive(Serialize)]
struct Change<'a> {
    tables: Vec<&'a str>,
}

/// The shortest time between two `change` events of one stream: changes within it
/// merge into the next event. A write after a quiet spell is told at once; a burst of
/// writes costs each subscriber at most one event per gap rather than one per write
/// (with many subscribers, the fan-out of every write is what a server spends most on).
const MIN_GAP: Duration = Duration::from_millis(25);
/// The gap grows with the number of subscribers by this much each, so that the server
/// sends at most about 5,000 events a second however many subscribe (at 1,000
/// subscribers, one event per subscriber every 200 ms under continuous writes)...
const GAP_PER_SUBSCRIBER: Duration = Duration::from_micros(200);
/// ...up to this.
const MAX_GAP: Duration = Duration::from_secs(1);

/// The gap after an event, with `subscribers` subscribed.
fn gap(subscribers: usize) -> Duration {
    let grown = GAP_PER_SUBSCRIBER.saturating_mul(u32::try_from(subscribers).unwrap_or(u32::MAX));
    grown.clamp(MIN_GAP, MAX_GAP)
}

/// One subscriber's events: `ready`, then a `change` whenever its inbox has tables (at
/// most one per [`gap`]).
#[derive(Debug)]
struct Events {
    ready: Option<Event>,
    hub: Arc<Hub>,
    subscription: Subscription,
    connection: Option<StreamingConnection>,
    /// Until when the next change waits (after an event); reset, not reallocated.
    gap: Pin<Box<tokio::time::Sleep>>,
    pacing: bool,
}

impl Stream for Events {
    type Item = Result<Event, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(ready) = this.ready.take() {
            return Poll::Ready(Some(Ok(ready)));
        }
        let inbox = this.subscription.inbox();
        // While the socket refuses bytes, changes wait merged in the inbox rather than
        // piling up in the connection's write buffer; the connection's task is woken
        // (and polls this again) when the socket takes bytes.
        if this.connection.as_ref().is_some_and(StreamingConnection::is_blocked) && !inbox.is_closed() {
            return Poll::Pending;
        }
        if this.pacing {
            if inbox.is_closed() {
                return Poll::Ready(None);
            }
            if this.gap.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.pacing = false;
        }
        match inbox.poll_take(cx) {
            Poll::Ready(Some(tables)) => {
                this.gap.as_mut().reset(tokio::time::Instant::now() + gap(this.hub.subscribers()));
                this.pacing = true;
                let change = Change { tables: tables.into_iter().map(|t| this.hub.name(t)).collect() };
                // A list of table names always serializes.
                let data = serde_json::to_string(&change).unwrap_or_default();
                Poll::Ready(Some(Ok(Event::default().event("change").data(data))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        if let Some(connection) = &self.connection {
            connection.end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gap_grows_with_the_subscribers_within_bounds() {
        assert_eq!(gap(1), MIN_GAP);
        assert_eq!(gap(125), MIN_GAP);
        assert_eq!(gap(1000), Duration::from_millis(200));
        assert_eq!(gap(usize::MAX), MAX_GAP);
    }
}
