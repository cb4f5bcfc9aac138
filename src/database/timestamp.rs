//! Timestamps as the database stores them: RFC 3339 in UTC with a fixed number of fraction
//! digits, so that their text sorts in time order.

use time::OffsetDateTime;

/// `t` as stored.
pub fn format(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC)
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        ))
        .unwrap_or_default()
}

/// Now, as stored.
pub fn now() -> String {
    format(OffsetDateTime::now_utc())
}

/// `delay` from now, as stored.
pub fn after(delay: std::time::Duration) -> String {
    format(OffsetDateTime::now_utc() + delay)
}

/// A stored timestamp (or any RFC 3339 time) read back; `None` when it is not one.
pub fn parse(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_order_is_time_order() {
        let early = format(time::macros::datetime!(2026-01-02 03:04:05.5 UTC));
        let late = format(
            time::macros::datetime!(2026-01-02 03:04:05.25 +0:00) + time::Duration::seconds(1),
        );
        assert_eq!(early, "2026-01-02T03:04:05.500000Z");
        assert!(early < late);
        assert!(now() < after(std::time::Duration::from_millis(10)));
        assert_eq!(format(parse(&early).unwrap()), early);
        assert_eq!(parse("yesterday"), None);
    }
}
