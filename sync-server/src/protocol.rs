//! Which protocol generation a request speaks: its `ZUMO-API-VERSION` (header, or query
//! parameter of that name). Kept apart from the extractors (`preamble.rs`) because error
//! answers (`problem.rs`) take their form from it too.

use sync_core::ProtocolVersion;

/// The `ZUMO-API-VERSION` values the server accepts: exactly `2.0.0` and `3.0.0` (around
/// spaces aside), which is what every client of the family sends (the Azure Mobile Apps
/// SDKs send `2.0.0`, the Datasync ones `3.0.0`, with no suffix). The reference servers
/// differ in what else they let through (the Node and ASP.NET v2 servers take any
/// `2.0.<n>`, the Datasync server `3.0` too); this one refuses everything else with a 400,
/// so that a client of a protocol this server does not speak learns it at once.
pub(crate) fn parse_protocol(value: &str) -> Option<ProtocolVersion> {
    match value.trim() {
        "2.0.0" => Some(ProtocolVersion::V2),
        "3.0.0" => Some(ProtocolVersion::V3),
        _ => None,
    }
}

/// The generation a request asks for (for the form of an error answer): the header,
/// else the query parameter; `None` when it names none the server accepts.
pub(crate) fn requested_protocol<B>(request: &axum::http::Request<B>) -> Option<ProtocolVersion> {
    let value = match request.headers().get(ProtocolVersion::HEADER) {
        Some(v) => v.to_str().ok()?.to_owned(),
        None => {
            let query = request.uri().query()?;
            let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
            pairs.into_iter().find(|(n, _)| n.eq_ignore_ascii_case(ProtocolVersion::HEADER))?.1
        }
    };
    parse_protocol(&value)
}
