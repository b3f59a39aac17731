//! 档案编号: the number of a case file that people say and write on paper,
//! such as `泽当-2026-K3-0042`, given offline by the device that opens the
//! file, without asking the hub or the station's other phones.
//!
//! A number is the station's short name, the year the file was opened, the
//! device's two-character code and a four-digit serial (more digits past
//! 9999) of that device and year. Two phones never give the same number
//! unless their codes coincide: the code is 10 bits of the device's origin
//! id written in an alphabet without look-alike characters, so two phones of
//! a station share one with a chance of 1 in 1,024, and then only numbers
//! of the same serial collide. The case id stays the key of a file: a number
//! that names two files (both shown in every list) is refused as ambiguous
//! where a case is asked for, with both case ids.
//!
//! Invariants: pure; a device gives one past the highest serial of its own
//! numbers of that year among the files it holds (a file whose opening was
//! voided counts as never opened, and its number is given again).

use uuid::Uuid;

/// The short names of the Nedong district's stations, by station code.
const SHORT_NAMES: [(&str, &str); 7] = [
    ("540502001", "泽当"),
    ("540502101", "昌珠"),
    ("540502200", "亚堆"),
    ("540502201", "索珠"),
    ("540502202", "多颇章"),
    ("540502203", "结巴"),
    ("540502204", "颇章"),
];

/// Letters and digits that cannot be read as one another (no I, O, 0, 1).
const ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// The station's short name: known for the Nedong stations, else its code.
pub fn station_short_name(station_code: &str) -> String {
    SHORT_NAMES
        .iter()
        .find(|(code, _)| *code == station_code)
        .map_or_else(|| station_code.to_string(), |(_, name)| (*name).to_string())
}

/// The two-character code of a device: the first 10 bits of its origin id.
pub fn device_code(origin_id: Uuid) -> String {
    let bytes = origin_id.as_bytes();
    let bits = (u16::from(bytes[0]) << 2) | (u16::from(bytes[1]) >> 6);
    [bits >> 5, bits & 0x1f]
        .iter()
        .map(|&i| char::from(ALPHABET[usize::from(i)]))
        .collect()
}

/// What every number a device gives in `year` starts with, up to the serial.
pub fn prefix(station_code: &str, year: i32, origin_id: Uuid) -> String {
    format!(
        "{}-{year}-{}-",
        station_short_name(station_code),
        device_code(origin_id)
    )
}

/// The serial of `number` when it starts with `prefix`.
pub fn serial(number: &str, prefix: &str) -> Option<u32> {
    let digits = number.strip_prefix(prefix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The number of serial `serial` after `prefix`: four digits at least.
pub fn number(prefix: &str, serial: u32) -> String {
    format!("{prefix}{serial:04}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_back_and_devices_get_distinct_codes_from_their_ids() {
        let origin = Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001);
        let p = prefix("540502001", 2026, origin);
        assert_eq!(p, "泽当-2026-AG-");
        assert_eq!(number(&p, 42), "泽当-2026-AG-0042");
        assert_eq!(serial("泽当-2026-AG-0042", &p), Some(42));
        assert_eq!(serial("泽当-2026-AG-12345", &p), Some(12345));
        assert_eq!(serial("泽当-2026-AH-0042", &p), None);
        assert_eq!(serial("泽当-2026-AG-", &p), None);
        assert_eq!(station_short_name("540102002"), "540102002");
        let codes: std::collections::BTreeSet<String> = (0u16..1024)
            .map(|bits| {
                let high = u128::from(bits) << 118;
                device_code(Uuid::from_u128(high))
            })
            .collect();
        assert_eq!(codes.len(), 1024);
    }
}
