//! What `GET /metrics` tells operators, in the Prometheus text format (OpenMetrics):
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `sync_server_requests_total` | counter | `route`, `method`, `status` |
//! | `sync_server_request_duration_seconds` | histogram | `route` |
//! | `sync_server_open_connections` | gauge | |
//! | `sync_server_feed_subscribers` | gauge: streams of the change feed open now | |
//! | `sync_server_db_pool_connections` | gauge | `state` = `open`, `idle`, `max` (PostgreSQL) |
//!
//! `route` is the route's pattern (`/tables/{table}`, `/tables/{table}/{id}`, `/healthz`,
//! `/metrics`, `/feed` (its duration is the time to the stream's first byte), or
//! `other`), never the request's path, so that no client can grow the
//! number of series. The endpoint needs no token, like `/healthz`: keep it off the
//! public internet with the proxy in front, or scrape from inside.

use std::fmt;
use std::time::Duration;

use axum::http::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::storage::PoolUse;

/// Latency buckets, in seconds: 1 ms to 10 s.
const BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The route a request took, by its pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Route {
    Table,
    Item,
    Health,
    Metrics,
    Feed,
    Other,
}

impl Route {
    /// The route of a request path.
    pub(crate) fn of(path: &str) -> Route {
        match path {
            "/healthz" => Route::Health,
            "/metrics" => Route::Metrics,
            "/feed" => Route::Feed,
            _ => match path.strip_prefix("/tables/").map(|rest| rest.split('/').count()) {
                Some(1) => Route::Table,
                Some(2) => Route::Item,
                _ => Route::Other,
            },
        }
    }

    fn pattern(self) -> &'static str {
        match self {
            Route::Table => "/tables/{table}",
            Route::Item => "/tables/{table}/{id}",
            Route::Health => "/healthz",
            Route::Metrics => "/metrics",
            Route::Feed => "/feed",
            Route::Other => "other",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The server's metrics: updated by the request middleware and the serve loop, read by
/// `GET /metrics`.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub(crate) open_connections: Gauge,
    pub(crate) feed_subscribers: Gauge,
    pool: Family<PoolLabels, Gauge>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").field("open_connections", &self.open_connections.get()).finish_non_exhaustive()
    }
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("sync_server");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "Requests answered, by route, method and status", requests.clone());
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "request_duration",
            "Time from a request's head to its answer, by route",
            prometheus_client::registry::Unit::Seconds,
            latency.clone(),
        );
        let open_connections = Gauge::default();
        registry.register("open_connections", "Client connections open now", open_connections.clone());
        let feed_subscribers: Gauge = Gauge::default();
        registry.register("feed_subscribers", "Streams of the change feed open now", feed_subscribers.clone());
        let pool = Family::<PoolLabels, Gauge>::default();
        registry.register("db_pool_connections", "Database connections of the storage's pool", pool.clone());
        Metrics { registry, requests, latency, open_connections, feed_subscribers, pool }
    }

    /// Counts an answered request.
    pub(crate) fn request_done(&self, route: Route, method: &Method, status: u16, elapsed: Duration) {
        let labels = RequestLabels { route: route.pattern(), method: method.as_str().to_owned(), status };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&RouteLabels { route: route.pattern() }).observe(elapsed.as_secs_f64());
    }

    /// The text of `GET /metrics`, with the pool's use as of now.
    pub(crate) fn render(&self, pool: Option<PoolUse>) -> String {
        if let Some(pool) = pool {
            for (state, n) in [("open", pool.open), ("idle", pool.idle), ("max", pool.max)] {
                self.pool.get_or_create(&PoolLabels { state }).set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_patterns_and_the_text_has_every_metric() {
        assert_eq!(Route::of("/tables/T"), Route::Table);
        assert_eq!(Route::of("/tables/T/a%2Fb"), Route::Item);
        assert_eq!(Route::of("/tables/T/a/b"), Route::Other);
        assert_eq!(Route::of("/healthz"), Route::Health);
        let metrics = Metrics::new();
        metrics.request_done(Route::Item, &Method::GET, 200, Duration::from_millis(3));
        metrics.open_connections.set(2);
        let text = metrics.render(Some(PoolUse { open: 3, idle: 1, max: 16 }));
        for needle in [
            r#"sync_server_requests_total{route="/tables/{table}/{id}",method="GET",status="200"} 1"#,
            r#"sync_server_request_duration_seconds_bucket{le="0.005",route="/tables/{table}/{id}"} 1"#,
            "sync_server_open_connections 2",
            "sync_server_feed_subscribers 0",
            r#"sync_server_db_pool_connections{state="max"} 16"#,
        ] {
            assert!(text.contains(needle), "{needle} in\n{text}");
        }
    }
}
