//! The parameters of a read of the projections, parsed once for both
//! surfaces: `station.v1.Query` (gRPC) and the HTTP side (JSON, reports,
//! dashboard).
//!
//! | parameter | absent or empty | `0` | above the maximum | malformed |
//! | --- | --- | --- | --- | --- |
//! | a count (`limit`, `max_events`, `max`) | the default | the default | refused | refused |
//! | `period` | refused | — | — | refused |
//! | `as_of` | today, China time | — | — | refused |
//!
//! Invariants: a count is never silently cut to the maximum (the caller would
//! take a cut list for the whole); 0 means the default because gRPC cannot tell
//! an absent number from 0; every refusal names its parameter and says what
//! is accepted, and carries nothing the caller did not send.

use chrono::NaiveDate;

use crate::projections::period::{BadPeriod, Period};

/// Most overdue cases one answer lists, and how many it lists by default
/// (the counts cover every one): about a megabyte, well inside a gRPC
/// message. The overdue report (`/reports/{station}/overdue.csv`) lists them
/// all.
pub const OVERDUE_CASES: Count = Count {
    name: "limit",
    default: 10_000,
    max: 10_000,
};

/// Quarantined events one answer lists by default, and at most.
pub const QUARANTINE_EVENTS: Count = Count {
    name: "max_events",
    default: 1_000,
    max: 10_000,
};

/// Read-audit records one answer lists by default (the newest), and at most.
pub const AUDIT_RECORDS: Count = Count {
    name: "limit",
    default: 1_000,
    max: 10_000,
};

/// A parameter the read refuses; the text names it and says what is
/// accepted. gRPC answers it as `INVALID_ARGUMENT`, HTTP as 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadParameter(pub String);

/// A bound on how many items one answer lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    /// The parameter's name on gRPC, used in refusals.
    pub name: &'static str,
    /// What 0 or an absent parameter means.
    pub default: usize,
    /// The most one answer lists.
    pub max: usize,
}

impl Count {
    /// The count asked for as a number: 0 is the default.
    ///
    /// # Errors
    /// A number above [`Count::max`].
    pub fn of(self, asked: u64) -> Result<usize, BadParameter> {
        match usize::try_from(asked) {
            Ok(0) => Ok(self.default),
            Ok(n) if n <= self.max => Ok(n),
            _ => Err(BadParameter(format!(
                "{}: at most {}, got {asked} (0 for {})",
                self.name, self.max, self.default
            ))),
        }
    }

    /// The count asked for as text, under the name `name` (HTTP's): absent
    /// or empty is the default, then as [`Count::of`].
    ///
    /// # Errors
    /// Text that is not a whole number from 0 up, or a number above
    /// [`Count::max`].
    pub fn parse(self, name: &str, text: Option<&str>) -> Result<usize, BadParameter> {
        let text = text.unwrap_or_default();
        if text.is_empty() {
            return Ok(self.default);
        }
        let asked = text.parse::<u64>().map_err(|_| {
            BadParameter(format!(
                "{name}: must be a whole number from 0 (for {}) to {}",
                self.default, self.max
            ))
        })?;
        self.of(asked)
            .map_err(|_| BadParameter(format!("{name}: at most {}, got {asked}", self.max)))
    }
}

/// The period of a ledger: `2026-11` (month), `2026-Q4` (quarter) or
/// `2026` (year).
///
/// # Errors
/// An empty or malformed period.
pub fn period(text: &str) -> Result<Period, BadParameter> {
    if text.is_empty() {
        return Err(BadParameter(format!("period: required; {PERIOD_FORMS}")));
    }
    text.parse()
        .map_err(|e: BadPeriod| BadParameter(format!("period: {e}; {PERIOD_FORMS}")))
}

/// How a period is written, for refusals.
const PERIOD_FORMS: &str = "write 2026-11, 2026-Q4 or 2026";

/// The date an overdue list is judged on: `YYYY-MM-DD`, or today (China
/// time) when empty.
///
/// # Errors
/// Anything else.
pub fn as_of(text: &str) -> Result<NaiveDate, BadParameter> {
    crate::projections::parse_as_of(text).map_err(|e| BadParameter(e.to_string()))
}

/// Whether a read asks to reveal ID numbers, phones and addresses
/// (`reveal`): `true` or `1`; `false`, `0`, empty or absent do not.
///
/// # Errors
/// [`BadParameter`] naming `reveal` for any other value.
pub fn reveal(text: Option<&str>) -> Result<bool, BadParameter> {
    match text.unwrap_or_default() {
        "true" | "1" => Ok(true),
        "" | "false" | "0" => Ok(false),
        _ => Err(BadParameter("reveal: must be true or false".into())),
    }
}

/// A month written `YYYY-MM` (`through`).
///
/// # Errors
/// [`BadParameter`] naming `through` for anything else.
pub fn month(text: &str) -> Result<Period, BadParameter> {
    match period(text) {
        Ok(month) if month.kind() == crate::projections::period::PeriodKind::Month => Ok(month),
        _ => Err(BadParameter(
            "through: must be a month written YYYY-MM".into(),
        )),
    }
}

/// A yes/no parameter `name`: `true` or `1`; `false`, `0`, empty or
/// absent are no.
///
/// # Errors
/// [`BadParameter`] naming `name` for any other value.
pub fn flag(name: &str, text: Option<&str>) -> Result<bool, BadParameter> {
    match text.unwrap_or_default() {
        "true" | "1" => Ok(true),
        "" | "false" | "0" => Ok(false),
        _ => Err(BadParameter(format!("{name}: must be true or false"))),
    }
}

/// The first day a listing covers (`since`), written `YYYY-MM-DD`.
///
/// # Errors
/// [`BadParameter`] naming `since` when it is not such a date.
pub fn since(text: &str) -> Result<NaiveDate, BadParameter> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .filter(|_| text.len() == 10)
        .ok_or_else(|| BadParameter("since: must be a date written YYYY-MM-DD".into()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_absent_are_the_default_and_too_many_is_refused() {
        assert_eq!(QUARANTINE_EVENTS.of(0), Ok(1_000));
        assert_eq!(QUARANTINE_EVENTS.of(7), Ok(7));
        assert_eq!(QUARANTINE_EVENTS.of(10_000), Ok(10_000));
        assert!(
            QUARANTINE_EVENTS
                .of(10_001)
                .unwrap_err()
                .0
                .contains("at most 10000")
        );
        assert_eq!(QUARANTINE_EVENTS.parse("max", None), Ok(1_000));
        assert_eq!(QUARANTINE_EVENTS.parse("max", Some("")), Ok(1_000));
        assert_eq!(QUARANTINE_EVENTS.parse("max", Some("0")), Ok(1_000));
        assert_eq!(OVERDUE_CASES.parse("limit", Some("3")), Ok(3));
        for bad in ["-1", "many", "1.5", "99999999999999999999999"] {
            let refused = OVERDUE_CASES.parse("limit", Some(bad)).unwrap_err();
            assert!(refused.0.starts_with("limit: "), "{refused}");
        }
        let refused = OVERDUE_CASES.parse("limit", Some("10001")).unwrap_err();
        assert_eq!(refused.0, "limit: at most 10000, got 10001");
    }

    #[test]
    fn periods_and_dates_are_refused_with_their_name() {
        assert!(period("2026-Q4").is_ok());
        assert!(period("").unwrap_err().0.starts_with("period: required"));
        assert!(period("2026-13").unwrap_err().0.starts_with("period: "));
        assert!(as_of("").is_ok());
        assert_eq!(
            as_of("2026-11-30").unwrap(),
            NaiveDate::from_ymd_opt(2026, 11, 30).unwrap()
        );
        assert!(as_of("2026-1-30").unwrap_err().0.starts_with("as_of: "));
    }
}
