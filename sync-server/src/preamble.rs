//! What every table request starts with, as axum extractors: the protocol generation,
//! the table (and the item's id) named by the path, the query string's pairs, and the
//! owner the caller acts as. Each rejects with the API's error answer ([`ApiError`]),
//! so a handler takes them as arguments and begins with its own work.
//!
//! Extractors run in argument order, and the first refusal is the answer: handlers list
//! them in the order the checks are answered (the query string and the protocol, then
//! the table, then the owner).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use sync_core::ProtocolVersion;

use crate::auth::Caller;
use crate::links::{LinkSettings, Links, LocalAddr};
use crate::problem::{ApiError, clip};
use crate::protocol::parse_protocol;
use crate::state::AppState;
use crate::table::TableDef;
use crate::wire::nul_message;

/// The query string's pairs, in order.
#[derive(Debug)]
pub(crate) struct QueryPairs(pub(crate) Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<QueryPairs, ApiError> {
        match Query::try_from_uri(&parts.uri) {
            Ok(Query(pairs)) => Ok(QueryPairs(pairs)),
            Err(e) => Err(ApiError::bad_request(format!("invalid query string: {}", e.body_text()))),
        }
    }
}

/// The protocol generation of a request: the `ZUMO-API-VERSION` header, or a query
/// parameter of that name (for browsers). A query string that does not parse is
/// refused first.
#[derive(Debug)]
pub(crate) struct Protocol(pub(crate) ProtocolVersion);

impl<S: Send + Sync> FromRequestParts<S> for Protocol {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Protocol, ApiError> {
        let QueryPairs(pairs) = QueryPairs::from_request_parts(parts, state).await?;
        protocol(&parts.headers, &pairs).map(Protocol)
    }
}

fn protocol(headers: &HeaderMap, pairs: &[(String, String)]) -> Result<ProtocolVersion, ApiError> {
    const ACCEPTED: &str = "this server accepts 2.0.0 (Azure Mobile Apps) and 3.0.0 (Datasync)";
    let value = match headers.get(ProtocolVersion::HEADER) {
        Some(v) => {
            Some(v.to_str().map_err(|_| ApiError::bad_request(format!("ZUMO-API-VERSION is not text; {ACCEPTED}")))?)
        }
        None => pairs.iter().find(|(n, _)| n.eq_ignore_ascii_case(ProtocolVersion::HEADER)).map(|(_, v)| v.as_str()),
    };
    match value {
        None => Err(ApiError::bad_request(format!("missing ZUMO-API-VERSION header; {ACCEPTED}"))),
        Some(v) => parse_protocol(v)
            .ok_or_else(|| ApiError::bad_request(format!("unsupported ZUMO-API-VERSION `{}`; {ACCEPTED}", clip(v)))),
    }
}

/// The protocol generation of a write to an item that only one generation has: v2's
/// `PATCH` (update) and `POST` (undelete), v3's `PUT` (replace). The other generation
/// gets 405, with the methods it has on the route.
#[derive(Debug)]
pub(crate) struct ItemWriteProtocol(pub(crate) ProtocolVersion);

impl<S: Send + Sync> FromRequestParts<S> for ItemWriteProtocol {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<ItemWriteProtocol, ApiError> {
        let Protocol(version) = Protocol::from_request_parts(parts, state).await?;
        let refusal = match (&parts.method, version) {
            (&Method::PUT, ProtocolVersion::V2) => {
                Some(("protocol 2.0.0 updates with PATCH; PUT is protocol 3.0.0", "GET, PATCH, DELETE, POST"))
            }
            (&Method::PATCH, ProtocolVersion::V3) => {
                Some(("protocol 3.0.0 replaces items with PUT; PATCH is protocol 2.0.0", "GET, PUT, DELETE"))
            }
            (&Method::POST, ProtocolVersion::V3) => Some((
                "protocol 3.0.0 undeletes with PUT and `deleted: false`; POST to an item is protocol 2.0.0",
                "GET, PUT, DELETE",
            )),
            _ => None,
        };
        match refusal {
            Some((message, allow)) => Err(ApiError::method_not_allowed(message, allow)),
            None => Ok(ItemWriteProtocol(version)),
        }
    }
}

/// The table of `/tables/{table}`: exact, or else ignoring ASCII case.
#[derive(Debug)]
pub(crate) struct Table(pub(crate) Arc<TableDef>);

impl FromRequestParts<Arc<AppState>> for Table {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Table, ApiError> {
        let Path(name) =
            Path::<String>::from_request_parts(parts, state).await.map_err(|e| ApiError::bad_request(e.body_text()))?;
        state.table(&name).map(Table)
    }
}

/// The table and the id of `/tables/{table}/{id}`.
#[derive(Debug)]
pub(crate) struct Item {
    pub(crate) table: Arc<TableDef>,
    pub(crate) id: String,
}

impl FromRequestParts<Arc<AppState>> for Item {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Item, ApiError> {
        let Path((name, id)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        let table = state.table(&name)?;
        if id.contains('\0') {
            return Err(ApiError::bad_request(nul_message("the id in the URL")));
        }
        Ok(Item { table, id })
    }
}

/// The owner the caller acts as in the path's table: its `sub` for an owned table,
/// `None` for a shared one. (The authentication layer put the [`Caller`] into the
/// request.)
#[derive(Debug)]
pub(crate) struct Owner(pub(crate) Option<String>);

impl FromRequestParts<Arc<AppState>> for Owner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Owner, ApiError> {
        let internal = |message: &str| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message);
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        let table = state.table(params.get("table").ok_or_else(|| internal("the route names no table"))?)?;
        let caller = parts.extensions.get::<Caller>().ok_or_else(|| internal("the request was not authenticated"))?;
        match (&table.owner_column, &caller.user) {
            (None, _) => Ok(Owner(None)),
            (Some(_), Some(user)) => Ok(Owner(Some(user.clone()))),
            // The builder refuses owned tables without authentication; never serve them so.
            (Some(_), None) => Err(ApiError::new(StatusCode::UNAUTHORIZED, "this table needs an authenticated caller")),
        }
    }
}

/// The origins of a request's links (see [`crate::links`]): the configured or trusted
/// forwarded origin, and the socket the connection was accepted on.
impl FromRequestParts<Arc<AppState>> for Links {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Links, ApiError> {
        let LinkSettings { public_url, trust_forwarded } = &state.links;
        let local = parts.extensions.get::<LocalAddr>().map(|LocalAddr(addr)| *addr);
        Ok(Links::new(public_url.as_deref(), *trust_forwarded, &parts.headers, local))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::*;

    fn parts(method: Method, uri: &str, version: Option<&str>) -> Parts {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(version) = version {
            request = request.header(ProtocolVersion::HEADER, version);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[tokio::test]
    async fn the_protocol_comes_from_the_header_or_the_query() {
        let protocol = |parts: Parts| async move {
            let mut parts = parts;
            Protocol::from_request_parts(&mut parts, &()).await.map(|Protocol(v)| v)
        };
        assert_eq!(protocol(parts(Method::GET, "/tables/T", Some("3.0.0"))).await.unwrap(), ProtocolVersion::V3);
        let from_query = parts(Method::GET, "/tables/T?zumo-api-version=2.0.0", None);
        assert_eq!(protocol(from_query).await.unwrap(), ProtocolVersion::V2);
        // The header wins over the query.
        let both = parts(Method::GET, "/tables/T?ZUMO-API-VERSION=2.0.0", Some("3.0.0"));
        assert_eq!(protocol(both).await.unwrap(), ProtocolVersion::V3);
        let missing = protocol(parts(Method::GET, "/tables/T", None)).await.unwrap_err();
        assert!(missing.status == StatusCode::BAD_REQUEST && missing.message.starts_with("missing ZUMO-API-VERSION"));
        let unsupported = protocol(parts(Method::GET, "/tables/T", Some("1.0.0"))).await.unwrap_err();
        assert!(unsupported.message.contains("unsupported ZUMO-API-VERSION `1.0.0`"), "{}", unsupported.message);
        for other in ["2.1.0", "3.1.0", "2.0", "2.0.0.0", "2.0.1", "3.0.0-beta", "22.0.0", "2"] {
            let refused = protocol(parts(Method::GET, "/tables/T", Some(other))).await.unwrap_err();
            assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{other}");
        }
        assert_eq!(protocol(parts(Method::GET, "/tables/T", Some(" 2.0.0 "))).await.unwrap(), ProtocolVersion::V2);
    }

    #[tokio::test]
    async fn item_writes_of_the_other_generation_are_405() {
        let check = |method: Method, version: &'static str| async move {
            let mut parts = parts(method, "/tables/T/a", Some(version));
            ItemWriteProtocol::from_request_parts(&mut parts, &()).await.map(|ItemWriteProtocol(v)| v)
        };
        assert_eq!(check(Method::PATCH, "2.0.0").await.unwrap(), ProtocolVersion::V2);
        assert_eq!(check(Method::POST, "2.0.0").await.unwrap(), ProtocolVersion::V2);
        assert_eq!(check(Method::PUT, "3.0.0").await.unwrap(), ProtocolVersion::V3);
        for (method, version, allow) in [
            (Method::PUT, "2.0.0", "GET, PATCH, DELETE, POST"),
            (Method::PATCH, "3.0.0", "GET, PUT, DELETE"),
            (Method::POST, "3.0.0", "GET, PUT, DELETE"),
        ] {
            let refused = check(method.clone(), version).await.unwrap_err();
            assert_eq!((refused.status, refused.allow), (StatusCode::METHOD_NOT_ALLOWED, Some(allow)), "{method}");
        }
        // A missing protocol is answered before the method.
        assert_eq!(
            ItemWriteProtocol::from_request_parts(&mut parts(Method::PUT, "/tables/T/a", None), &())
                .await
                .unwrap_err()
                .status,
            StatusCode::BAD_REQUEST
        );
    }
}
