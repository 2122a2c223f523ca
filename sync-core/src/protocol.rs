//! The two protocol generations: v2 (Azure Mobile Apps) and v3 (Datasync), told apart
//! by the `ZUMO-API-VERSION` header.

use std::fmt;

/// Which generation of the table protocol to speak.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    /// Azure Mobile Apps (`ZUMO-API-VERSION: 2.0.0`).
    #[default]
    V2,
    /// Datasync (`ZUMO-API-VERSION: 3.0.0`).
    V3,
}

impl ProtocolVersion {
    /// The `ZUMO-API-VERSION` header name.
    pub const HEADER: &'static str = "ZUMO-API-VERSION";

    /// The `ZUMO-API-VERSION` header value.
    pub const fn header_value(self) -> &'static str {
        match self {
            ProtocolVersion::V2 => "2.0.0",
            ProtocolVersion::V3 => "3.0.0",
        }
    }

    /// Reads a `ZUMO-API-VERSION` header value (`2.x.y` or `3.x.y`).
    pub fn from_header(value: &str) -> Option<ProtocolVersion> {
        let major = value.trim().split('.').next()?;
        match major {
            "2" => Some(ProtocolVersion::V2),
            "3" => Some(ProtocolVersion::V3),
            _ => None,
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProtocolVersion::V2 => "v2",
            ProtocolVersion::V3 => "v3",
        })
    }
}
