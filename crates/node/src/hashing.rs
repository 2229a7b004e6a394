//! The bounded Argon2id pool: a fixed set of dedicated hashing threads, each
//! owning one reusable working-memory buffer (so hashing allocates nothing
//! per request and memory stays at `workers` × the Argon2 memory cost). At
//! most `queue` more requests may wait; beyond that a request is refused at
//! once (RESOURCE_EXHAUSTED) instead of queueing without limit. Hashing never
//! runs on the async runtime's threads.

use crate::metrics::NodeMetrics;
use async_trait::async_trait;
use domicile_core::password::{self, HashParams, Scratch, Verified};
use domicile_identity::{IdentityError, ports::Hasher};
use std::{
    sync::{Arc, Mutex, mpsc},
    time::Instant,
};
use tokio::sync::{Semaphore, oneshot};
use tracing::Instrument;

type Job = Box<dyn FnOnce(&mut Scratch) + Send>;

#[derive(Clone)]
pub struct HashPool {
    admission: Arc<Semaphore>,
    jobs: mpsc::Sender<Job>,
    metrics: Arc<NodeMetrics>,
}

impl HashPool {
    /// `workers` = 0 means one per CPU core.
    pub fn new(
        workers: usize,
        queue: usize,
        metrics: Arc<NodeMetrics>,
    ) -> Result<Self, crate::NodeError> {
        let workers = if workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            workers
        };
        let (jobs, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    let mut scratch = Scratch::default();
                    loop {
                        // The lock is held only while taking the next job.
                        let next = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        match next {
                            Ok(job) => job(&mut scratch),
                            // Every pool handle is gone: the node stopped.
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| crate::NodeError::start("hashing thread", e))?;
        }
        Ok(Self {
            admission: Arc::new(Semaphore::new(workers + queue)),
            jobs,
            metrics,
        })
    }

    /// Runs `f` on a hashing thread, or fails with `Busy` when the workers
    /// and the queue are full. `op` names the work in metrics and traces.
    pub async fn run<R: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut Scratch) -> R + Send + 'static,
    ) -> Result<R, IdentityError> {
        let m = &self.metrics;
        let Ok(_admitted) = self.admission.clone().try_acquire_owned() else {
            m.hash_rejected.with_label_values(&[m.region()]).inc();
            return Err(IdentityError::Busy);
        };
        let (done, result) = oneshot::channel();
        let metrics = self.metrics.clone();
        metrics.hash_queue.inc();
        let job: Job = Box::new(move |scratch| {
            metrics.hash_queue.dec();
            let started = Instant::now();
            let r = f(scratch);
            metrics
                .hash_seconds
                .with_label_values(&[metrics.region(), op])
                .observe(started.elapsed().as_secs_f64());
            let _ = done.send(r);
        });
        if self.jobs.send(job).is_err() {
            m.hash_queue.dec();
            return Err(IdentityError::Internal {
                op,
                detail: "hashing threads have stopped".into(),
            });
        }
        result
            .instrument(tracing::debug_span!(
                "argon2id",
                otel.name = op,
                region = m.region()
            ))
            .await
            .map_err(|_| IdentityError::Internal {
                op,
                detail: "hash job was dropped".into(),
            })
    }
}

/// The use cases' password hashing: Argon2id under the federation's
/// parameters, on this pool.
pub struct PoolHasher {
    pub pool: HashPool,
    pub params: HashParams,
}

#[async_trait]
impl Hasher for PoolHasher {
    async fn hash(&self, password: String, salt: [u8; 16]) -> Result<String, IdentityError> {
        let params = self.params;
        self.pool
            .run("hash", move |scratch| {
                password::hash_with(&password, &params, salt, scratch)
            })
            .await?
            .map_err(|e| IdentityError::Internal {
                op: "hash",
                detail: e.to_string(),
            })
    }

    async fn verify(&self, password: String, phc: String) -> Result<Verified, IdentityError> {
        let policy = self.params;
        self.pool
            .run("verify", move |scratch| {
                password::verify_with(&password, &phc, &policy, scratch)
            })
            .await?
            .map_err(|e| IdentityError::Internal {
                op: "verify",
                detail: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_metrics() -> Arc<NodeMetrics> {
        Arc::new(NodeMetrics::new("eu").unwrap())
    }

    #[tokio::test]
    async fn full_pool_refuses_at_once() {
        let pool = HashPool::new(1, 1, test_metrics()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = Arc::new(Mutex::new(rx));
        let mut held = Vec::new();
        for _ in 0..2 {
            let (p, rx) = (pool.clone(), rx.clone());
            held.push(tokio::spawn(async move {
                p.run("test", move |_| rx.lock().map(|r| r.recv()).is_ok())
                    .await
            }));
        }
        // Let both reach the pool (one running, one queued).
        while pool.admission.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            pool.run("test", |_| ()).await,
            Err(IdentityError::Busy)
        ));
        assert_eq!(
            pool.metrics.hash_rejected.with_label_values(&["eu"]).get(),
            1
        );
        // The worker takes the first job soon after admission; the second waits.
        for _ in 0..1000 {
            if pool.metrics.hash_queue.get() == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        assert_eq!(pool.metrics.hash_queue.get(), 1, "one job waits");
        tx.send(()).unwrap();
        tx.send(()).unwrap();
        for h in held {
            assert!(h.await.unwrap().is_ok());
        }
        assert!(pool.run("test", |_| ()).await.is_ok(), "capacity returns");
    }

    #[tokio::test]
    async fn workers_reuse_their_memory() {
        use domicile_core::password::hash_with;
        let pool = HashPool::new(1, 4, test_metrics()).unwrap();
        let params = HashParams {
            memory_kib: 256,
            iterations: 1,
            parallelism: 1,
        };
        let mut sizes = Vec::new();
        for i in 0..5u8 {
            let size = pool
                .run("hash", move |s| {
                    hash_with("pw", &params, [i; 16], s).unwrap();
                    s.capacity_bytes()
                })
                .await
                .unwrap();
            sizes.push(size);
        }
        assert!(sizes.windows(2).all(|w| w[0] == w[1]), "{sizes:?}");
        assert_eq!(sizes[0], 256 * 1024);
    }
}
