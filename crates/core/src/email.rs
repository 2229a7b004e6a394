//! Email addresses: validation and the normal form used for hashing,
//! uniqueness and routing.
//!
//! Normal form: surrounding white space trimmed, local part and domain
//! lower-cased, domain converted to ASCII (IDNA/UTS #46, so `Bücher.de` and
//! `xn--bcher-kva.de` are one domain). Sub-addressing (`+tag`) and dots are kept:
//! providers differ on their meaning, and folding them would merge accounts.

use std::fmt;

/// Longest address accepted (RFC 5321: 254 octets in a path).
pub const MAX_EMAIL_LEN: usize = 254;
/// Longest local part (RFC 5321).
pub const MAX_LOCAL_LEN: usize = 64;

/// A validated, normalized email address.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email {
    normalized: String,
    at: usize,
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Personal data: never in debug output or logs.
        write!(f, "Email(<redacted>@{})", self.domain())
    }
}

/// Why an email address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEmail {
    #[error("email is empty")]
    Empty,
    #[error("email is longer than {MAX_EMAIL_LEN} bytes")]
    TooLong,
    #[error("email must contain exactly one '@' with text on both sides")]
    Shape,
    #[error("email local part is longer than {MAX_LOCAL_LEN} bytes")]
    LocalTooLong,
    #[error("email local part contains a character that is not allowed")]
    LocalCharacter,
    #[error("email domain is not a valid domain name")]
    Domain,
}

impl Email {
    /// Validates and normalizes an address.
    pub fn parse(input: &str) -> Result<Self, InvalidEmail> {
        // Check the raw length first so huge inputs cost nothing.
        if input.len() > MAX_EMAIL_LEN * 4 {
            return Err(InvalidEmail::TooLong);
        }
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(InvalidEmail::Empty);
        }
        let (local, domain) = match trimmed.split_once('@') {
            Some((l, d)) if !l.is_empty() && !d.is_empty() && !d.contains('@') => (l, d),
            _ => return Err(InvalidEmail::Shape),
        };
        let local = local.to_lowercase();
        if local.len() > MAX_LOCAL_LEN {
            return Err(InvalidEmail::LocalTooLong);
        }
        // Dot-atom of RFC 5322 plus UTF-8 (RFC 6531); no quoted strings, no
        // leading, trailing or doubled dots.
        let local_ok = local.chars().all(|c| {
            c.is_alphanumeric()
                || "!#$%&'*+-/=?^_`{|}~.".contains(c)
                || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
        }) && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..");
        if !local_ok {
            return Err(InvalidEmail::LocalCharacter);
        }
        let domain = normalize_domain(domain).ok_or(InvalidEmail::Domain)?;
        let normalized = format!("{local}@{domain}");
        if normalized.len() > MAX_EMAIL_LEN {
            return Err(InvalidEmail::TooLong);
        }
        Ok(Self {
            at: local.len(),
            normalized,
        })
    }

    /// The normal form (personal data: keep it in the home region).
    pub fn as_str(&self) -> &str {
        &self.normalized
    }

    /// The ASCII domain, for domain rules.
    pub fn domain(&self) -> &str {
        &self.normalized[self.at + 1..]
    }
}

/// Lower-cases a domain and converts it to ASCII; `None` if it is not a
/// usable internet domain (needs a dot, labels of 1-63 letters, digits or
/// hyphens, no leading or trailing hyphen, not all-numeric TLD).
pub fn normalize_domain(domain: &str) -> Option<String> {
    let ascii = idna::domain_to_ascii(domain).ok()?;
    let ascii = ascii.strip_suffix('.').unwrap_or(&ascii).to_owned();
    if ascii.is_empty() || ascii.len() > 253 || !ascii.contains('.') {
        return None;
    }
    let labels_ok = ascii.split('.').all(|l| {
        (1..=63).contains(&l.len())
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    let tld_ok = ascii
        .rsplit('.')
        .next()
        .is_some_and(|t| !t.bytes().all(|b| b.is_ascii_digit()));
    (labels_ok && tld_ok).then_some(ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<&str, InvalidEmail>) {
        assert_eq!(
            Email::parse(input)
                .as_ref()
                .map(Email::as_str)
                .map_err(Clone::clone),
            expected,
            "{input:?}"
        );
    }

    #[test]
    fn normalization() {
        check("alice@example.com", Ok("alice@example.com"));
        check("  Alice@Example.COM \n", Ok("alice@example.com"));
        check("bob+news@example.com", Ok("bob+news@example.com"));
        check("jürgen@Bücher.de", Ok("jürgen@xn--bcher-kva.de"));
        check("x@xn--bcher-kva.de", Ok("x@xn--bcher-kva.de"));
        check("a@sub.example.co.uk.", Ok("a@sub.example.co.uk"));
    }

    #[test]
    fn refusals() {
        check("", Err(InvalidEmail::Empty));
        check("   ", Err(InvalidEmail::Empty));
        check("alice", Err(InvalidEmail::Shape));
        check("@example.com", Err(InvalidEmail::Shape));
        check("alice@", Err(InvalidEmail::Shape));
        check("a@b@example.com", Err(InvalidEmail::Shape));
        check("al ice@example.com", Err(InvalidEmail::LocalCharacter));
        check(".alice@example.com", Err(InvalidEmail::LocalCharacter));
        check("al..ice@example.com", Err(InvalidEmail::LocalCharacter));
        check("alice@localhost", Err(InvalidEmail::Domain));
        check("alice@exa mple.com", Err(InvalidEmail::Domain));
        check("alice@-example.com", Err(InvalidEmail::Domain));
        check("alice@1.2.3.4", Err(InvalidEmail::Domain));
        check(
            &format!("{}@example.com", "a".repeat(65)),
            Err(InvalidEmail::LocalTooLong),
        );
        check(
            &format!("{}@{}com", "a".repeat(64), "bbbbbbbbb.".repeat(19)),
            Err(InvalidEmail::TooLong),
        );
        check(&"a".repeat(1 << 20), Err(InvalidEmail::TooLong));
    }

    #[test]
    fn debug_output_hides_the_local_part() {
        let e = Email::parse("secret.person@example.com").unwrap();
        assert!(!format!("{e:?}").contains("secret"));
    }
}
