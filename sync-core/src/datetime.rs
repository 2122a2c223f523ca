//! The one timestamp format of the store and the wire: UTC, whole milliseconds,
//! `YYYY-MM-DDTHH:MM:SS.mmmZ`. Fixed width, so text order is time order.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Converts to UTC and drops sub-millisecond digits.
pub fn normalize(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(UtcOffset::UTC);
    let ms = t.nanosecond() / 1_000_000 * 1_000_000;
    t.replace_nanosecond(ms).unwrap_or(t)
}

/// Formats as `YYYY-MM-DDTHH:MM:SS.mmmZ` (after [`normalize`]).
pub fn format(t: OffsetDateTime) -> String {
    let t = normalize(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Parses an RFC 3339 timestamp (any offset, any fraction) and normalizes it.
pub fn parse(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok().map(normalize)
}

/// Whether the year fits the fixed-width format (0000-9999).
pub fn in_range(t: OffsetDateTime) -> bool {
    (0..=9999).contains(&t.to_offset(UtcOffset::UTC).year())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_fixed_width_utc_milliseconds() {
        let t = parse("2026-01-02T04:04:05.678912+01:00").unwrap();
        assert_eq!(format(t), "2026-01-02T03:04:05.678Z");
        assert_eq!(parse(&format(t)), Some(t));
    }
}
