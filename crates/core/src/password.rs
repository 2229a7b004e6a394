//! Passwords: the acceptance policy and Argon2id hashing (PHC strings).
//!
//! Hashing is pure CPU work (~16 ms and 19 MiB at the defaults). This module
//! only computes; running it on a bounded pool off the async runtime is the
//! node's job. The salt is passed in.

use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version,
    password_hash::{Output, SaltString},
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

/// Largest Argon2 memory cost accepted from a stored hash (256 MiB): a
/// tampered record must not make a node allocate without bound.
pub const MAX_STORED_MEMORY_KIB: u32 = 256 * 1024;

/// Reusable Argon2 working memory. A hashing thread keeps one and passes it
/// to every hash, so hashing allocates nothing per call (19 MiB a call at the
/// defaults would otherwise churn the allocator across threads).
#[derive(Default)]
pub struct Scratch(Vec<Block>);

impl Scratch {
    fn blocks(&mut self, n: usize) -> &mut [Block] {
        if self.0.len() < n {
            self.0.resize(n, Block::default());
        }
        &mut self.0[..n]
    }

    /// Bytes currently held.
    pub fn capacity_bytes(&self) -> usize {
        self.0.capacity() * Block::SIZE
    }
}

fn hashing(e: impl std::fmt::Display) -> PasswordError {
    PasswordError::Hashing(e.to_string())
}

/// Like [`hash`], with caller-provided working memory.
pub fn hash_with(
    password: &str,
    params: &HashParams,
    salt: [u8; 16],
    scratch: &mut Scratch,
) -> Result<String, PasswordError> {
    let a = params.argon2()?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let blocks = scratch.blocks(a.params().block_count());
    a.hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, blocks)
        .map_err(hashing)?;
    let salt = SaltString::encode_b64(&salt).map_err(hashing)?;
    let output = Output::new(&out).map_err(hashing)?;
    Ok(format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.memory_kib,
        params.iterations,
        params.parallelism,
        salt.as_str(),
        output
    ))
}

/// Like [`verify`], with caller-provided working memory. Compares in constant time.
pub fn verify_with(
    password: &str,
    phc: &str,
    policy: &HashParams,
    scratch: &mut Scratch,
) -> Result<Verified, PasswordError> {
    let parsed = PasswordHash::new(phc).map_err(|_| PasswordError::BadHash)?;
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|_| PasswordError::BadHash)?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).map_err(|_| PasswordError::BadHash)?,
        None => Version::V0x10,
    };
    let stored = Params::try_from(&parsed).map_err(|_| PasswordError::BadHash)?;
    if stored.m_cost() > MAX_STORED_MEMORY_KIB {
        return Err(PasswordError::BadHash);
    }
    let expected = parsed.hash.ok_or(PasswordError::BadHash)?;
    let mut salt_buf = [0u8; 64];
    let salt = parsed
        .salt
        .ok_or(PasswordError::BadHash)?
        .decode_b64(&mut salt_buf)
        .map_err(|_| PasswordError::BadHash)?;
    let params = Params::new(
        stored.m_cost(),
        stored.t_cost(),
        stored.p_cost(),
        Some(expected.len()),
    )
    .map_err(|_| PasswordError::BadHash)?;
    let a = Argon2::new(algorithm, version, params);
    let mut out = vec![0u8; expected.len()];
    let blocks = scratch.blocks(a.params().block_count());
    a.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, blocks)
        .map_err(hashing)?;
    // `Output`'s equality is constant-time.
    if Output::new(&out).map_err(hashing)? != expected {
        return Ok(Verified::No);
    }
    Ok(if needs_rehash(&parsed, policy) {
        Verified::YesRehash
    } else {
        Verified::Yes
    })
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
    fn scratch_versions_match_the_library() {
        let mut scratch = Scratch::default();
        for params in [
            CHEAP,
            HashParams {
                memory_kib: 128,
                iterations: 2,
                parallelism: 2,
            },
        ] {
            let ours = hash_with("correct horse", &params, [5; 16], &mut scratch).unwrap();
            assert_eq!(
                ours,
                hash("correct horse", &params, [5; 16]).unwrap(),
                "byte-identical PHC strings"
            );
            assert_eq!(
                verify_with("correct horse", &ours, &params, &mut scratch),
                Ok(Verified::Yes)
            );
            assert_eq!(
                verify_with("wrong horse", &ours, &params, &mut scratch),
                Ok(Verified::No)
            );
        }
        // The buffer is reused, not grown per call.
        let held = scratch.capacity_bytes();
        hash_with("again", &CHEAP, [6; 16], &mut scratch).unwrap();
        assert_eq!(scratch.capacity_bytes(), held);
        // Hashes made elsewhere (argon2i, older parameters) still verify.
        let legacy = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(64, 1, 1, None).unwrap(),
        )
        .hash_password(b"old secret", &SaltString::encode_b64(&[9; 16]).unwrap())
        .unwrap()
        .to_string();
        assert_eq!(
            verify_with("old secret", &legacy, &CHEAP, &mut scratch),
            Ok(Verified::YesRehash)
        );
        assert_eq!(
            verify_with("x", "garbage", &CHEAP, &mut scratch),
            Err(PasswordError::BadHash)
        );
        let greedy = "$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        assert_eq!(
            verify_with("x", greedy, &CHEAP, &mut scratch),
            Err(PasswordError::BadHash),
            "bounded memory"
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
