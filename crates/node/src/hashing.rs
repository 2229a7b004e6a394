//! The bounded Argon2id pool: a fixed set of dedicated hashing threads, each
//! owning one reusable working-memory buffer (so hashing allocates nothing
//! per request and memory stays at `workers` × the Argon2 memory cost). At
//! most `queue` more requests may wait; beyond that a request is refused at
//! once (RESOURCE_EXHAUSTED) instead of queueing without limit. Hashing never
//! runs on the async runtime's threads.

use crate::error::NodeError;
use domicile_core::password::Scratch;
use std::sync::{Arc, Mutex, mpsc};
use tokio::sync::{Semaphore, oneshot};

type Job = Box<dyn FnOnce(&mut Scratch) + Send>;

#[derive(Clone)]
pub struct HashPool {
    admission: Arc<Semaphore>,
    jobs: mpsc::Sender<Job>,
}

impl HashPool {
    /// `workers` = 0 means one per CPU core.
    pub fn new(workers: usize, queue: usize) -> Result<Self, NodeError> {
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
                .map_err(|e| NodeError::Internal(format!("cannot start hashing thread: {e}")))?;
        }
        Ok(Self {
            admission: Arc::new(Semaphore::new(workers + queue)),
            jobs,
        })
    }

    /// Runs `f` on a hashing thread, or fails with `Busy` when the workers
    /// and the queue are full.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Scratch) -> R + Send + 'static,
    ) -> Result<R, NodeError> {
        let _admitted = self
            .admission
            .clone()
            .try_acquire_owned()
            .map_err(|_| NodeError::Busy)?;
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move |scratch| {
            let _ = done.send(f(scratch));
        });
        self.jobs
            .send(job)
            .map_err(|_| NodeError::Internal("hashing threads have stopped".into()))?;
        result
            .await
            .map_err(|_| NodeError::Internal("hash job was dropped".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_pool_refuses_at_once() {
        let pool = HashPool::new(1, 1).unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let rx = Arc::new(Mutex::new(rx));
        let mut held = Vec::new();
        for _ in 0..2 {
            let (p, rx) = (pool.clone(), rx.clone());
            held.push(tokio::spawn(async move {
                p.run(move |_| rx.lock().map(|r| r.recv()).is_ok()).await
            }));
        }
        // Let both reach the pool (one running, one queued).
        while pool.admission.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(pool.run(|_| ()).await, Err(NodeError::Busy)));
        tx.send(()).unwrap();
        tx.send(()).unwrap();
        for h in held {
            assert!(h.await.unwrap().is_ok());
        }
        assert!(pool.run(|_| ()).await.is_ok(), "capacity returns");
    }

    #[tokio::test]
    async fn workers_reuse_their_memory() {
        use domicile_core::password::{HashParams, hash_with};
        let pool = HashPool::new(1, 4).unwrap();
        let params = HashParams {
            memory_kib: 256,
            iterations: 1,
            parallelism: 1,
        };
        let mut sizes = Vec::new();
        for i in 0..5u8 {
            let size = pool
                .run(move |s| {
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
