//! The hub's calendar: China time, the day an answer is asked about, and
//! where a day ends. Dates of service are local dates (China Standard Time,
//! no daylight saving); the hub's instants are milliseconds since the epoch.

use chrono::NaiveDate;
use station_proto::case::parse_date;

/// Offset of China Standard Time from UTC, seconds: period ends and the
/// default `as_of` are in the stations' local time.
pub const CHINA_UTC_OFFSET_SECS: i32 = 8 * 3600;

/// The hub's current date in China time.
pub fn today_in_china() -> NaiveDate {
    date_in_china(chrono::Utc::now().timestamp_millis())
}

/// The date in China time at `ms` since the epoch (out of chrono's range:
/// the date of the epoch's end of range it clamps to).
pub fn date_in_china(ms: i64) -> NaiveDate {
    let at = chrono::DateTime::from_timestamp_millis(ms).unwrap_or(if ms < 0 {
        chrono::DateTime::<chrono::Utc>::MIN_UTC
    } else {
        chrono::DateTime::<chrono::Utc>::MAX_UTC
    });
    chrono::FixedOffset::east_opt(CHINA_UTC_OFFSET_SECS).map_or_else(
        || at.date_naive(),
        |offset| at.with_timezone(&offset).date_naive(),
    )
}

/// The date an overdue list is asked for: `YYYY-MM-DD`, or today (China
/// time) when empty.
///
/// # Errors
/// The refusal, naming the field, for anything else.
pub fn parse_as_of(text: &str) -> Result<NaiveDate, &'static str> {
    if text.is_empty() {
        return Ok(today_in_china());
    }
    parse_date(text)
        .filter(|_| text.len() == 10)
        .ok_or("as_of: must be a date written YYYY-MM-DD")
}

/// The first instant (ms since the epoch) after `day` ends, China time.
pub fn end_of_day_ms(day: NaiveDate) -> i64 {
    let next = day.succ_opt().unwrap_or(day);
    next.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc().timestamp_millis() - i64::from(CHINA_UTC_OFFSET_SECS) * 1000)
        .unwrap_or(i64::MAX)
}
