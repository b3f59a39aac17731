//! Minimisation: what a reader is shown of a person. One place decides how
//! an ID number, a phone number and an address are masked, and what is left
//! of a de-identified case; every answer of the hub (gRPC, JSON, dashboard,
//! reports) goes through it.
//!
//! | field | masked | example |
//! | --- | --- | --- |
//! | ID number | first 6 and last 4 characters kept, each other one `*` | `540502********002X` |
//! | phone | first 3 and last 4 digits kept (7 characters or more), else every character `*` | `139****5678` |
//! | address | the first characters kept (half of it, at most 6, never splitting a Tibetan stack), then `****` whatever its length | `西藏山南市乃****` |
//!
//! A de-identified case (closed longer than the retention period) shows
//! [`DEIDENTIFIED`] for its name and nothing for its ID number, phone,
//! address or free text: the case id, dates, tiers, categories and
//! communities stay, so every count stays the same.
//!
//! Invariants: masking keeps no more than the table says; an empty field
//! stays empty (so "no phone" reads the same masked); masking is idempotent;
//! every event body is matched without a wildcard, so a new event carrying
//! personal data cannot be added without deciding here what it shows.

use crate::Body;

/// What stands for a hidden character.
pub const MASK: char = '*';
/// What a de-identified case shows for its person's name.
pub const DEIDENTIFIED: &str = "已注销";

/// How much of a person an answer shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// Everything: the reader asked to reveal (and the read is audited as such).
    Revealed,
    /// Names, with ID numbers, phones and addresses masked: the default.
    Masked,
    /// Nothing that identifies the person: a case closed longer than the
    /// retention period.
    Deidentified,
}

/// `text` with every character but the first `head` and the last `tail`
/// replaced by [`MASK`]; every character masked when it is too short to
/// keep both.
fn keep_ends(text: &str, head: usize, tail: usize) -> String {
    let count = text.chars().count();
    if count <= head + tail {
        return text.chars().map(|_| MASK).collect();
    }
    text.chars()
        .enumerate()
        .map(|(i, c)| {
            if i < head || i >= count - tail {
                c
            } else {
                MASK
            }
        })
        .collect()
}

/// An ID number as shown masked: `540502********002X`.
pub fn id_number(text: &str) -> String {
    keep_ends(text, 6, 4)
}

/// A phone number as shown masked: `139****5678`.
pub fn phone(text: &str) -> String {
    if text.chars().count() < 7 {
        return text.chars().map(|_| MASK).collect();
    }
    keep_ends(text, 3, 4)
}

/// Whether `c` joins the character before it in a Tibetan stack (vowel
/// signs, subjoined letters and the like).
fn joins_previous(c: char) -> bool {
    matches!(c, '\u{0F71}'..='\u{0F84}' | '\u{0F86}'..='\u{0F87}' | '\u{0F8D}'..='\u{0FBC}')
}

/// An address as shown masked: its first characters (half of it, at most
/// six), then `****`; empty stays empty.
pub fn address(text: &str) -> String {
    if text.is_empty() {
        return String::new();
    }
    let chars: Vec<char> = text.chars().collect();
    let mut keep = (chars.len() / 2).min(6);
    while keep > 0 && chars.get(keep).is_some_and(|c| joins_previous(*c)) {
        keep -= 1;
    }
    let mut shown: String = chars.iter().take(keep).collect();
    shown.push_str("****");
    shown
}

/// A person's name as shown: itself, or [`DEIDENTIFIED`].
pub fn name(text: &str, shown: Shown) -> String {
    match shown {
        Shown::Revealed | Shown::Masked => text.to_string(),
        Shown::Deidentified => DEIDENTIFIED.to_string(),
    }
}

/// Free text about a person (notes, reasons): itself unless de-identified.
pub(crate) fn free_text(text: &mut String, shown: Shown) {
    if shown == Shown::Deidentified {
        text.clear();
    }
}

/// Applies `shown` to an event body in place: the personal fields of a
/// case's opening are masked or removed, and de-identified free text is
/// cleared. Bodies about no person are left as they are.
pub fn body(body: &mut Body, shown: Shown) {
    if shown == Shown::Revealed {
        return;
    }
    body.kind_mut().mask(shown);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::CaseOpened;

    #[test]
    fn id_numbers_keep_six_and_four() {
        assert_eq!(id_number("54050219500101002X"), "540502********002X");
        assert_eq!(
            id_number(&id_number("54050219500101002X")),
            "540502********002X"
        );
        assert_eq!(id_number("12345"), "*****");
        assert_eq!(id_number(""), "");
    }

    #[test]
    fn phones_keep_three_and_four() {
        assert_eq!(phone("13908931234"), "139****1234");
        assert_eq!(phone("0893-7821234"), "089*****1234");
        assert_eq!(phone("12345"), "*****");
        assert_eq!(phone(""), "");
    }

    #[test]
    fn addresses_keep_their_start_whole() {
        assert_eq!(address("西藏山南市乃东区泽当镇12号"), "西藏山南市乃****");
        assert_eq!(address("泽当镇"), "泽****");
        assert_eq!(address(""), "");
        // "རྩེད" : the subjoined ྩ and the vowel sign ེ stay with their letter.
        assert_eq!(address("རྩེད་ཐང"), "རྩེ****");
        // Cut after ར, the next character (subjoined ྩ) would be cut off its letter.
        assert_eq!(address("རྩ"), "****");
    }

    #[test]
    fn a_case_opening_is_masked_or_deidentified() {
        let opened = CaseOpened {
            name: "次仁卓玛".into(),
            id_number: "54050219500101002X".into(),
            address: "西藏山南市乃东区泽当镇12号".into(),
            phone: "13908931234".into(),
            ..CaseOpened::default()
        };
        let mut masked = Body::CaseOpened(opened.clone());
        body(&mut masked, Shown::Masked);
        let Body::CaseOpened(m) = &masked else {
            unreachable!()
        };
        assert_eq!(m.name, "次仁卓玛");
        assert_eq!(m.id_number, "540502********002X");
        assert_eq!(m.phone, "139****1234");
        assert_eq!(m.address, "西藏山南市乃****");
        let mut gone = Body::CaseOpened(opened.clone());
        body(&mut gone, Shown::Deidentified);
        let Body::CaseOpened(m) = &gone else {
            unreachable!()
        };
        assert_eq!(m.name, DEIDENTIFIED);
        assert!(m.id_number.is_empty() && m.phone.is_empty() && m.address.is_empty());
        let mut whole = Body::CaseOpened(opened.clone());
        body(&mut whole, Shown::Revealed);
        assert_eq!(whole, Body::CaseOpened(opened));
    }
}
