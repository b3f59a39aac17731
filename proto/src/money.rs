//! Money as events carry it: whole fen (分, 0.01 yuan) in an `i64`, read from the yuan
//! amounts people write.
//!
//! Invariants: parsing is exact (decimal digits, never through floating point); it keeps
//! the sign, so that validation, not parsing, reports a negative amount by field name;
//! it never overflows (an amount beyond `i64` fen is refused, not wrapped).

/// A text that is not an amount in yuan. Carries nothing of the text itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an amount in yuan (e.g. 1200.50)")]
pub struct NotYuan;

/// Parses an amount in yuan with at most two decimals (`1200`, `1200.5`, `1200.50`,
/// `-20`) into fen. Surrounding whitespace is ignored.
///
/// # Errors
///
/// [`NotYuan`] for an empty text, anything but ASCII digits around one optional `.`
/// after an optional leading `-`, more than two decimals, no digit before the `.`,
/// or an amount beyond `i64` fen.
pub fn parse_yuan(text: &str) -> Result<i64, NotYuan> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty()
        || frac.len() > 2
        || !(whole.chars().chain(frac.chars())).all(|c| c.is_ascii_digit())
    {
        return Err(NotYuan);
    }
    let whole: i64 = whole.parse().map_err(|_| NotYuan)?;
    let frac: i64 = format!("{frac:0<2}").parse().map_err(|_| NotYuan)?;
    let fen = whole
        .checked_mul(100)
        .and_then(|w| w.checked_add(frac))
        .ok_or(NotYuan)?;
    Ok(if negative { -fen } else { fen })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_becomes_fen_exactly() {
        assert_eq!(parse_yuan("0"), Ok(0));
        assert_eq!(parse_yuan("1200"), Ok(120_000));
        assert_eq!(parse_yuan("1200.5"), Ok(120_050));
        assert_eq!(parse_yuan("1200.50"), Ok(120_050));
        assert_eq!(parse_yuan("0.07"), Ok(7));
        assert_eq!(parse_yuan("12."), Ok(1200));
        assert_eq!(parse_yuan(" 3.10 "), Ok(310));
    }

    #[test]
    fn the_sign_is_kept_for_validation_to_judge() {
        assert_eq!(parse_yuan("-20"), Ok(-2000));
        assert_eq!(parse_yuan("-0.01"), Ok(-1));
    }

    #[test]
    fn anything_else_is_not_yuan() {
        for bad in [
            "",
            " ",
            "-",
            ".5",
            "1.234",
            "1,200",
            "1e3",
            "+5",
            "--5",
            "1.2.3",
            "¥5",
            "五",
            "0x10",
            "92233720368547758.08",
        ] {
            assert_eq!(parse_yuan(bad), Err(NotYuan), "{bad:?}");
        }
        assert_eq!(parse_yuan("92233720368547758.07"), Ok(i64::MAX));
    }
}
