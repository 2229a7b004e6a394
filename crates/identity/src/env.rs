//! Time and randomness, passed into the use cases so tests can control them.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

/// Wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Seconds since the Unix epoch.
    fn now(&self) -> i64 {
        i64::try_from(self.now_ms() / 1000).unwrap_or(i64::MAX)
    }
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A clock tests move by hand.
#[derive(Clone, Debug, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    pub fn at(seconds: i64) -> Self {
        Self(Arc::new(AtomicU64::new(
            u64::try_from(seconds).unwrap_or(0) * 1000,
        )))
    }

    pub fn advance(&self, seconds: i64) {
        self.0
            .fetch_add(u64::try_from(seconds).unwrap_or(0) * 1000, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A source of secure random bytes.
pub trait Entropy: Send + Sync + 'static {
    fn fill(&self, buf: &mut [u8]);
}

/// The operating system's CSPRNG.
#[derive(Clone, Copy, Debug, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&self, buf: &mut [u8]) {
        use rand::RngCore;
        rand::rngs::OsRng.fill_bytes(buf);
    }
}

/// Helpers over `dyn Entropy`.
pub fn random<const N: usize>(e: &dyn Entropy) -> [u8; N] {
    let mut b = [0; N];
    e.fill(&mut b);
    b
}

pub fn random_u128(e: &dyn Entropy) -> u128 {
    u128::from_le_bytes(random::<16>(e))
}
