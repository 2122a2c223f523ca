//! The query options of `GET /tables/{t}`: parsing and checking them, and the link to
//! the next page.

use sync_core::ProtocolVersion;
use sync_core::odata::{self, FilterSchema};
use sync_core::query::{Expr, OrderBy};

use crate::problem::{ApiError, clip};
use crate::table::TableDef;
use crate::wire::{Prop, nul_message, prop_by_name};

/// The checked query options of a list request.
#[derive(Debug, Default)]
pub(crate) struct ListOptions {
    pub(crate) filter: Option<Expr>,
    pub(crate) order_by: Vec<OrderBy>,
    /// `$top` as asked (not yet capped).
    pub(crate) top: Option<u64>,
    pub(crate) skip: u64,
    /// `$select`; `None` is every property.
    pub(crate) select: Option<Vec<Prop>>,
    /// `$inlinecount=allpages` / `$count=true`.
    pub(crate) count: bool,
    /// `__includeDeleted=true` / `__includedeleted=true`.
    pub(crate) include_deleted: bool,
}

const SUPPORTED: &str = "$filter, $orderby, $top, $skip, $select, $count, $inlinecount";

/// The most `$orderby` terms a list takes: checked here, before any SQL is built, so a
/// long order is a 400 of ours rather than a database's limit.
pub(crate) const MAX_ORDER_TERMS: usize = 32;

/// Whether a query parameter is the tombstones flag (`__includeDeleted` in v2,
/// `__includedeleted` in v3; both accepted, in any letter case).
fn is_include_deleted(name: &str) -> bool {
    name.eq_ignore_ascii_case("__includedeleted")
}

/// Reads the tombstones flag alone (for `GET /tables/{t}/{id}`).
pub(crate) fn include_deleted(pairs: &[(String, String)]) -> Result<bool, ApiError> {
    let mut result = false;
    for (name, value) in pairs {
        if is_include_deleted(name) {
            result = parse_bool(name, value)?;
        }
    }
    Ok(result)
}

/// Parses and checks the query options. Both spellings of the count and tombstone
/// options are accepted in both generations; an unknown `$` option is refused (a typo
/// must not silently return everything); other parameters are ignored.
pub(crate) fn parse(
    pairs: &[(String, String)],
    table: &TableDef,
    version: ProtocolVersion,
) -> Result<ListOptions, ApiError> {
    let mut opts = ListOptions::default();
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in pairs {
        let key = if is_include_deleted(name) { "__includedeleted" } else { name.as_str() };
        if (key.starts_with('$') || key == "__includedeleted") && seen.contains(&key) {
            return Err(ApiError::bad_request(format!("query option `{name}` is given more than once")));
        }
        seen.push(key);
        let schema: &dyn FilterSchema = table;
        match key {
            // An empty filter or order is none (parse_order_by would accept it; parse_filter not).
            "$filter" | "$orderby" if value.trim().is_empty() => {}
            "$filter" if value.contains('\0') => {
                let position = value.chars().take_while(|c| *c != '\0').count();
                return Err(ApiError {
                    position: Some(position),
                    ..ApiError::bad_request(format!("{} (at position {position})", nul_message("$filter")))
                });
            }
            "$filter" => {
                opts.filter =
                    Some(odata::parse_filter(value, Some(schema)).map_err(|e| ApiError::odata("$filter", &e))?);
            }
            "$orderby" => {
                opts.order_by =
                    odata::parse_order_by(value, Some(schema)).map_err(|e| ApiError::odata("$orderby", &e))?;
                if opts.order_by.len() > MAX_ORDER_TERMS {
                    return Err(ApiError::bad_request(format!(
                        "$orderby has {} terms; at most {MAX_ORDER_TERMS} are allowed",
                        opts.order_by.len()
                    )));
                }
            }
            "$top" => opts.top = Some(parse_count(name, value)?),
            "$skip" => opts.skip = parse_count(name, value)?,
            "$select" => opts.select = parse_select(value, table, version)?,
            "$count" => opts.count = parse_bool(name, value)?,
            "$inlinecount" => {
                opts.count = match value.as_str() {
                    "allpages" => true,
                    "none" => false,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "$inlinecount must be `allpages` or `none`, found `{}`",
                            clip(value)
                        )));
                    }
                }
            }
            "__includedeleted" => opts.include_deleted = parse_bool(name, value)?,
            _ if key.starts_with('$') => {
                return Err(ApiError::bad_request(format!(
                    "unsupported query option `{}`; supported: {SUPPORTED}",
                    clip(name)
                )));
            }
            _ => {}
        }
    }
    Ok(opts)
}

/// A non-negative integer that SQL can take (`$top`, `$skip`).
fn parse_count(name: &str, value: &str) -> Result<u64, ApiError> {
    match value.trim().parse::<u64>() {
        Ok(n) if n <= i64::MAX as u64 => Ok(n),
        _ => Err(ApiError::bad_request(format!(
            "{name} must be a non-negative integer below 2^63, found `{}`",
            clip(value)
        ))),
    }
}

fn parse_bool(name: &str, value: &str) -> Result<bool, ApiError> {
    if value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(ApiError::bad_request(format!("{name} must be `true` or `false`, found `{}`", clip(value))))
    }
}

fn parse_select(value: &str, table: &TableDef, version: ProtocolVersion) -> Result<Option<Vec<Prop>>, ApiError> {
    if value.trim() == "*" {
        return Ok(None);
    }
    let mut props = Vec::new();
    for name in value.split(',').map(str::trim) {
        if name.is_empty() {
            return Err(ApiError::bad_request("$select has an empty property name"));
        }
        let prop = prop_by_name(table, version, name).ok_or_else(|| {
            ApiError::bad_request(format!("$select: table `{}` has no property `{}`", table.name, clip(name)))
        })?;
        if !props.contains(&prop) {
            props.push(prop);
        }
    }
    Ok(Some(props))
}

/// The request again with `$skip` (and `$top`, when the client asked for a total)
/// advanced; every other parameter is kept.
pub(crate) fn next_link(base: &str, pairs: &[(String, String)], skip: u64, top: Option<u64>) -> String {
    let mut url = String::from(base);
    let mut sep = '?';
    for (name, value) in pairs.iter().filter(|(n, _)| n != "$skip" && n != "$top") {
        url.push(sep);
        encode(name, &mut url);
        url.push('=');
        encode(value, &mut url);
        sep = '&';
    }
    if let Some(top) = top {
        url.push_str(&format!("{sep}$top={top}"));
        sep = '&';
    }
    url.push_str(&format!("{sep}$skip={skip}"));
    url
}

/// Percent-encodes a query component: unreserved characters and a few OData-friendly
/// ones stay as they are; `+`, `&`, `=`, `#`, `%` and spaces never do.
pub(crate) fn encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~$'(),:*".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_core::ColumnType;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    fn table() -> TableDef {
        TableDef::new("T").column("text", ColumnType::String, true)
    }

    #[test]
    fn options_are_checked() {
        let t = table();
        let o = parse(
            &pairs(&[("$top", "5"), ("$skip", "10"), ("$count", "true"), ("__includeDeleted", "true")]),
            &t,
            ProtocolVersion::V3,
        )
        .unwrap();
        assert_eq!((o.top, o.skip, o.count, o.include_deleted), (Some(5), 10, true, true));
        let o = parse(&pairs(&[("$inlinecount", "allpages"), ("__includedeleted", "TRUE")]), &t, ProtocolVersion::V2)
            .unwrap();
        assert!(o.count && o.include_deleted);

        for bad in [
            vec![("$top", "-1")],
            vec![("$top", "99999999999999999999")],
            vec![("$skip", "9223372036854775808")],
            vec![("$top", "1"), ("$top", "2")],
            vec![("$count", "yes")],
            vec![("$inlinecount", "some")],
            vec![("$expand", "x")],
            vec![("$select", "text,nope")],
            vec![("$select", "createdAt")],
        ] {
            let err = parse(&pairs(&bad), &t, ProtocolVersion::V3).unwrap_err();
            assert_eq!(err.status, 400, "{bad:?}");
        }
        // v2 serves createdAt
        let o = parse(&pairs(&[("$select", "id, createdAt")]), &t, ProtocolVersion::V2).unwrap();
        assert_eq!(o.select, Some(vec![Prop::Id, Prop::CreatedAt]));
        // other parameters are ignored
        assert!(parse(&pairs(&[("foo", "bar"), ("__systemproperties", "*")]), &t, ProtocolVersion::V2).is_ok());
    }

    #[test]
    fn next_links_keep_the_query() {
        let link = next_link(
            "http://h:1/tables/T",
            &pairs(&[("$filter", "text eq 'a b+c&'"), ("$skip", "3"), ("$count", "true")]),
            13,
            Some(7),
        );
        assert_eq!(link, "http://h:1/tables/T?$filter=text%20eq%20'a%20b%2Bc%26'&$count=true&$top=7&$skip=13");
        assert_eq!(next_link("/tables/T", &[], 100, None), "/tables/T?$skip=100");
    }
}
