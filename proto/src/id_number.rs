//! Resident ID numbers (公民身份号码, GB 11643): the check character and what the
//! number says about its holder.
//!
//! The one place these rules are written. [`crate::validate::id_number`] checks a whole
//! number with them; the agent's command line derives a birth date and a gender from
//! them; generators and tests build valid numbers with [`with_check_character`].
//!
//! Invariants: every function is pure and total (any `&str` in, no panic); the readers
//! ([`birth_date`], [`gender`]) look only at the characters they need and do not check
//! the rest of the number, which is [`crate::validate::id_number`]'s job.

use chrono::NaiveDate;

use crate::v1::Gender;

/// GB 11643 weights of the first 17 digits.
const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// GB 11643 check characters, indexed by the weighted sum modulo 11.
const CHECK: &[u8; 11] = b"10X98765432";

/// The check character of a number whose first 17 characters are `first17`:
/// `"10X98765432"[Σ digitᵢ·weightᵢ mod 11]` with weights
/// `7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2`. Always a digit or upper-case `X`.
///
/// `None` unless `first17` is exactly 17 ASCII digits.
pub fn check_character(first17: &str) -> Option<char> {
    let digits = first17.as_bytes();
    if digits.len() != WEIGHTS.len() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum: u32 = digits
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    CHECK
        .get((sum % 11) as usize)
        .map(|&check| char::from(check))
}

/// The 18-character number made of `first17` and its [`check_character`].
///
/// `None` unless `first17` is exactly 17 ASCII digits.
pub fn with_check_character(first17: &str) -> Option<String> {
    check_character(first17).map(|check| format!("{first17}{check}"))
}

/// The form of a number that two entries of the same number share: without
/// surrounding whitespace, with a lower-case `x` written `X`. It is the form
/// [`crate::validate::id_number`] stores, so a validated number is already
/// normalised; indexes normalise again so that any stored event finds its
/// person.
pub fn normalise(id_number: &str) -> String {
    id_number.trim().to_ascii_uppercase()
}

/// The birth date written as `YYYYMMDD` at characters 7 to 14, if those are digits
/// forming a real date.
pub fn birth_date(id_number: &str) -> Option<NaiveDate> {
    let digits = id_number.get(6..14)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year = digits[..4].parse().ok()?;
    let month = digits[4..6].parse().ok()?;
    let day = digits[6..8].parse().ok()?;
    NaiveDate::from_ymd_opt(year, month, day)
}

/// The gender the 17th character says: an odd digit is male, an even one female.
///
/// `None` when there is no 17th character or it is not a digit.
pub fn gender(id_number: &str) -> Option<Gender> {
    let digit = *id_number.as_bytes().get(16)?;
    if !digit.is_ascii_digit() {
        return None;
    }
    // ASCII '0' is even, so the parity of the byte is the parity of the digit.
    Some(if digit % 2 == 1 {
        Gender::Male
    } else {
        Gender::Female
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_character_of_the_standard_example() {
        // The example printed in GB 11643-1999.
        assert_eq!(check_character("11010519491231002"), Some('X'));
        assert_eq!(
            with_check_character("11010519491231002").as_deref(),
            Some("11010519491231002X")
        );
        assert_eq!(check_character("44052418800101001"), Some('4'));
    }

    #[test]
    fn every_check_character_occurs() {
        let mut seen: Vec<char> = (0..200u32)
            .filter_map(|n| check_character(&format!("54050219800101{n:03}")))
            .collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 11, "{seen:?}");
    }

    #[test]
    fn check_character_needs_seventeen_digits() {
        for bad in [
            "",
            "1101051949123100",
            "110105194912310021",
            "1101051949123100x",
            "11010519491231 02",
            "１1010519491231002",
        ] {
            assert_eq!(check_character(bad), None, "{bad:?}");
            assert_eq!(with_check_character(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn birth_date_reads_characters_seven_to_fourteen() {
        assert_eq!(
            birth_date("11010519491231002X"),
            NaiveDate::from_ymd_opt(1949, 12, 31)
        );
        assert_eq!(birth_date("110105194913310021"), None, "month 13");
        assert_eq!(
            birth_date("110105190002290021"),
            None,
            "1900 was not a leap year"
        );
        assert_eq!(birth_date("1101051949"), None, "too short");
        assert_eq!(birth_date("110105１949123100"), None, "not ASCII");
    }

    #[test]
    fn gender_is_the_parity_of_the_seventeenth_digit() {
        assert_eq!(gender("11010519491231002X"), Some(Gender::Female));
        assert_eq!(gender("110105194912310011"), Some(Gender::Male));
        assert_eq!(gender("1101051949123100"), None, "too short");
        assert_eq!(gender("1101051949123100X1"), None, "not a digit");
    }
}
