//! The bounded Argon2id pool: hashing runs on blocking threads, at most
//! `workers` at once, with at most `queue` more waiting; beyond that a
//! request is refused at once (RESOURCE_EXHAUSTED) instead of queueing
//! without limit.

use crate::error::NodeError;
use std::sync::Arc;
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct HashPool {
    admission: Arc<Semaphore>,
    workers: Arc<Semaphore>,
}

impl HashPool {
    /// `workers` = 0 means one per CPU core.
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = if workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            workers
        };
        Self {
            admission: Arc::new(Semaphore::new(workers + queue)),
            workers: Arc::new(Semaphore::new(workers)),
        }
    }

    /// Runs `f` on the pool, or fails with `Busy` when the pool and queue are full.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, NodeError> {
        let _admitted = self
            .admission
            .clone()
            .try_acquire_owned()
            .map_err(|_| NodeError::Busy)?;
        let _worker = self
            .workers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| NodeError::Busy)?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| NodeError::Internal(format!("hash task failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_pool_refuses_at_once() {
        let pool = HashPool::new(1, 1);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        let mut held = Vec::new();
        for _ in 0..2 {
            let (p, rx) = (pool.clone(), rx.clone());
            held.push(tokio::spawn(async move {
                p.run(move || rx.lock().map(|r| r.recv()).is_ok()).await
            }));
        }
        // Let both reach the pool (one running, one queued).
        while pool.admission.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(pool.run(|| ()).await, Err(NodeError::Busy)));
        tx.send(()).unwrap();
        tx.send(()).unwrap();
        for h in held {
            assert!(h.await.unwrap().is_ok());
        }
        assert!(pool.run(|| ()).await.is_ok(), "capacity returns");
    }
}
