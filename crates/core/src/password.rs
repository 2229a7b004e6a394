//! Passwords: the acceptance policy and Argon2id hashing (PHC strings).
//!
//! Hashing is pure CPU work (~16 ms and 19 MiB at the defaults). This module
//! only computes; running it on a bounded pool off the async runtime is the
//! node's job. The salt is passed in.

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version,
    password_hash::SaltString,
};

/// Shortest password accepted, in characters (NIST SP 800-63B).
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted, in bytes: bounds the hashing input.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB (OWASP: 19 MiB = 19456).
    pub memory_kib: u32,
    /// Passes (OWASP: 2).
    pub iterations: u32,
    /// Lanes (OWASP: 1).
    pub parallelism: u32,
}

impl HashParams {
    /// OWASP's recommendation: m=19 MiB, t=2, p=1.
    pub const OWASP: Self = Self {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };

    fn argon2(&self) -> Result<Argon2<'static>, PasswordError> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| PasswordError::Params(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// Checks that argon2 accepts these parameters.
    pub fn validate(&self) -> Result<(), PasswordError> {
        self.argon2().map(|_| ())
    }
}

/// Why a password was refused or could not be hashed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("password must be at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    #[error("password must be at most {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    #[error("invalid argon2 parameters: {0}")]
    Params(String),
    #[error("stored password hash is not a valid PHC string")]
    BadHash,
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

/// Validates a candidate password's length (the only composition rule, per NIST).
pub fn check_policy(password: &str) -> Result<(), PasswordError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong);
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(PasswordError::TooShort);
    }
    Ok(())
}

/// Hashes a password into a PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
pub fn hash(password: &str, params: &HashParams, salt: [u8; 16]) -> Result<String, PasswordError> {
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hashing(e.to_string()))?;
    let phc = params
        .argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| PasswordError::Hashing(e.to_string()))?;
    Ok(phc.to_string())
}

/// Outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    No,
    Yes,
    /// Correct, and the stored hash is weaker than policy: store a new one.
    YesRehash,
}

/// Verifies a password against a stored PHC string, using the stored parameters.
pub fn verify(password: &str, phc: &str, policy: &HashParams) -> Result<Verified, PasswordError> {
    let parsed = PasswordHash::new(phc).map_err(|_| PasswordError::BadHash)?;
    let ok = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    if !ok {
        return Ok(Verified::No);
    }
    Ok(if needs_rehash(&parsed, policy) {
        Verified::YesRehash
    } else {
        Verified::Yes
    })
}

fn needs_rehash(parsed: &PasswordHash<'_>, policy: &HashParams) -> bool {
    if parsed.algorithm.as_str() != "argon2id" || parsed.version != Some(0x13) {
        return true;
    }
    match Params::try_from(parsed) {
        Ok(p) => {
            p.m_cost() < policy.memory_kib
                || p.t_cost() < policy.iterations
                || p.p_cost() < policy.parallelism
        }
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: HashParams = HashParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    fn check(password: &str, expected: Result<(), PasswordError>) {
        assert_eq!(check_policy(password), expected, "{} bytes", password.len());
    }

    #[test]
    fn policy() {
        check("", Err(PasswordError::TooShort));
        check("1234567", Err(PasswordError::TooShort));
        check("12345678", Ok(()));
        check("ääääääää", Ok(()));
        check(&"x".repeat(1024), Ok(()));
        check(&"x".repeat(1025), Err(PasswordError::TooLong));
        check(&"x".repeat(1 << 20), Err(PasswordError::TooLong));
    }

    #[test]
    fn hash_and_verify() {
        let phc = hash("correct horse", &CHEAP, [3; 16]).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert_eq!(verify("correct horse", &phc, &CHEAP), Ok(Verified::Yes));
        assert_eq!(verify("wrong horse", &phc, &CHEAP), Ok(Verified::No));
        assert_eq!(
            verify("x", "not a hash", &CHEAP),
            Err(PasswordError::BadHash)
        );
    }

    #[test]
    fn weaker_hashes_are_rehashed() {
        let phc = hash("correct horse", &CHEAP, [3; 16]).unwrap();
        let stronger = HashParams {
            memory_kib: 128,
            ..CHEAP
        };
        assert_eq!(
            verify("correct horse", &phc, &stronger),
            Ok(Verified::YesRehash)
        );
        let weaker_policy = HashParams {
            memory_kib: 32,
            ..CHEAP
        };
        assert_eq!(
            verify("correct horse", &phc, &weaker_policy),
            Ok(Verified::Yes)
        );
    }

    #[test]
    fn owasp_defaults() {
        assert_eq!(
            HashParams::OWASP,
            HashParams {
                memory_kib: 19456,
                iterations: 2,
                parallelism: 1
            }
        );
        assert!(HashParams::OWASP.validate().is_ok());
        assert!(
            HashParams {
                memory_kib: 1,
                iterations: 0,
                parallelism: 0
            }
            .validate()
            .is_err()
        );
    }
}
