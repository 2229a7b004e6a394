//! Phone numbers: validation and the normal form (E.164) used for hashing,
//! uniqueness, routing and sending.
//!
//! Only the international form is accepted: a `+` (or `00`) and the
//! country calling code, then the number, with spaces, dots, hyphens and
//! parentheses allowed between digits. Domicile serves every country from
//! one hostname, so a national number ("030 1234567") has no country to
//! guess from; the hosted pages and apps ask for the international form.
//! The number must be valid for its country by Google's libphonenumber
//! metadata (the `phonenumber` crate) and of a kind that can receive a
//! text message: fixed lines, freephone, premium-rate, shared-cost,
//! pager, voicemail and short codes are refused.
//!
//! The check before the crate is strict on purpose: the input is bounded
//! and reduced to `+` and digits, so the parser never sees letters,
//! extensions or odd punctuation.

use phonenumber::{Mode, Type, metadata::DATABASE};
use std::fmt;

/// Most digits of an E.164 number (country code included).
pub const MAX_DIGITS: usize = 15;
/// Fewest digits accepted (the shortest real mobile numbers have 7 or more).
pub const MIN_DIGITS: usize = 7;
/// Longest input read at all, separators included.
pub const MAX_INPUT: usize = 40;

/// A validated phone number in E.164 form (`+4915112345678`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Phone {
    e164: String,
    country_code: u16,
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Personal data: only the country calling code is shown.
        write!(f, "Phone(+{} <redacted>)", self.country_code)
    }
}

/// Why a phone number was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPhone {
    #[error("phone number is empty")]
    Empty,
    #[error("phone number is longer than {MAX_INPUT} characters")]
    TooLong,
    #[error(
        "phone number must be in international form: '+', the country code and the number (e.g. +49 151 12345678)"
    )]
    NotInternational,
    #[error(
        "phone number may contain only digits, spaces, dots, hyphens and parentheses after the '+'"
    )]
    Character,
    #[error("phone number must have {MIN_DIGITS} to {MAX_DIGITS} digits with its country code")]
    Length,
    #[error("phone number is not a valid number of its country")]
    Invalid,
    #[error("phone number cannot receive text messages (a {0} number)")]
    CannotText(&'static str),
}

impl Phone {
    /// Validates and normalizes a number.
    pub fn parse(input: &str) -> Result<Self, InvalidPhone> {
        if input.len() > MAX_INPUT * 4 {
            return Err(InvalidPhone::TooLong);
        }
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(InvalidPhone::Empty);
        }
        if trimmed.len() > MAX_INPUT {
            return Err(InvalidPhone::TooLong);
        }
        let rest = if let Some(r) = trimmed.strip_prefix('+') {
            r
        } else if let Some(r) = trimmed.strip_prefix("00") {
            r
        } else {
            return Err(InvalidPhone::NotInternational);
        };
        let mut digits = String::with_capacity(MAX_DIGITS + 1);
        digits.push('+');
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '.' | '-' | '(' | ')' => {}
                _ => return Err(InvalidPhone::Character),
            }
        }
        if !(MIN_DIGITS..=MAX_DIGITS).contains(&(digits.len() - 1)) {
            return Err(InvalidPhone::Length);
        }
        let number = phonenumber::parse(None, &digits).map_err(|_| InvalidPhone::Invalid)?;
        if !number.is_valid() {
            return Err(InvalidPhone::Invalid);
        }
        let refused = match number.number_type(&DATABASE) {
            Type::Mobile | Type::FixedLineOrMobile | Type::PersonalNumber | Type::Voip => None,
            Type::FixedLine => Some("fixed-line"),
            Type::TollFree => Some("freephone"),
            Type::PremiumRate => Some("premium-rate"),
            Type::SharedCost => Some("shared-cost"),
            Type::Pager => Some("pager"),
            Type::Uan => Some("company"),
            Type::Emergency => Some("emergency"),
            Type::Voicemail => Some("voicemail"),
            Type::ShortCode => Some("short code"),
            _ => Some("unknown kind of"),
        };
        if let Some(kind) = refused {
            return Err(InvalidPhone::CannotText(kind));
        }
        Ok(Self {
            e164: number.format().mode(Mode::E164).to_string(),
            country_code: number.country().code(),
        })
    }

    /// The E.164 form (personal data: keep it in the home region).
    pub fn as_str(&self) -> &str {
        &self.e164
    }

    /// The country calling code (`49`), for metrics and rules.
    pub fn country_code(&self) -> u16 {
        self.country_code
    }

    /// The number with all but its last two digits hidden (`+49•••••••••78`),
    /// for showing the user which number a code went to.
    pub fn masked(&self) -> String {
        let cc = self.country_code.to_string();
        let national = &self.e164[1 + cc.len()..];
        let keep = national.len().saturating_sub(2);
        format!("+{cc}{}{}", "•".repeat(keep), &national[keep..])
    }
}

/// A stored E.164 number masked for showing: as [`Phone::masked`] when it
/// still parses, else all but its last two digits hidden.
pub fn mask_stored(e164: &str) -> String {
    match Phone::parse(e164) {
        Ok(p) => p.masked(),
        Err(_) => {
            let digits: Vec<char> = e164.chars().filter(char::is_ascii_digit).collect();
            let keep = digits.len().saturating_sub(2);
            let tail: String = digits[keep..].iter().collect();
            format!("+{}{tail}", "•".repeat(keep))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<&str, InvalidPhone>) {
        assert_eq!(
            Phone::parse(input)
                .as_ref()
                .map(Phone::as_str)
                .map_err(Clone::clone),
            expected,
            "{input:?}"
        );
    }

    #[test]
    fn normalization() {
        check("+4915112345678", Ok("+4915112345678"));
        check(" +49 151 1234-5678 ", Ok("+4915112345678"));
        check("0049 (151) 12345678", Ok("+4915112345678"));
        check("+1 (415) 555-0123", Ok("+14155550123"));
        check("+33 6 12 34 56 78", Ok("+33612345678"));
        check("+61.412.345.678", Ok("+61412345678"));
        check("+81 90 1234 5678", Ok("+819012345678"));
    }

    #[test]
    fn refusals() {
        check("", Err(InvalidPhone::Empty));
        check("  ", Err(InvalidPhone::Empty));
        check("015112345678", Err(InvalidPhone::NotInternational));
        check("4915112345678", Err(InvalidPhone::NotInternational));
        check("+49 151 1234567x", Err(InvalidPhone::Character));
        check("+49151123;45678", Err(InvalidPhone::Character));
        check("+4915112345678 ext. 12", Err(InvalidPhone::Character));
        check("+  2 22#:", Err(InvalidPhone::Character));
        check("+", Err(InvalidPhone::Length));
        check("+12345", Err(InvalidPhone::Length));
        check("+1234567890123456", Err(InvalidPhone::Length));
        check("+9999999", Err(InvalidPhone::Invalid));
        check("+49 151", Err(InvalidPhone::Length));
        check("+491510000", Err(InvalidPhone::Invalid));
        check("+49 30 123456", Err(InvalidPhone::CannotText("fixed-line")));
        check(
            "+44 20 7123 4567",
            Err(InvalidPhone::CannotText("fixed-line")),
        );
        check(
            "+1 800 555 0199",
            Err(InvalidPhone::CannotText("freephone")),
        );
        check(&"+4".repeat(100), Err(InvalidPhone::TooLong));
        check(&"1".repeat(1 << 20), Err(InvalidPhone::TooLong));
    }

    #[test]
    fn debug_output_and_mask_hide_the_number() {
        let p = Phone::parse("+4915112345678").unwrap();
        let shown = format!("{p:?}");
        assert!(!shown.contains("151") && shown.contains("+49"), "{shown}");
        assert_eq!(p.masked(), "+49•••••••••78");
        assert_eq!(p.country_code(), 49);
        assert_eq!(mask_stored("+4915112345678"), "+49•••••••••78");
        assert_eq!(
            mask_stored("+999123"),
            "+••••23",
            "no longer valid, still masked"
        );
    }
}
