//! Upstream cluster's crdt batching: operations queue (bounded by `max_queue_size`) and are
//! committed as one delta when the batch reaches `max_batch_size` operations, when its first
//! operation is `max_batch_age` old, or when the delta grows past `max_batch_delta_size`.

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::BatchingConfig;
use crate::error::CrdtError;
use crate::store::{Batch, CrdtStore, Published};

/// One queued update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
}

/// Handle to the batching task. [`Batcher::submit`] returns once the operation is queued,
/// as upstream's `LogPin` with batching on; each committed batch's [`Published`] goes to the
/// channel given to [`Batcher::spawn`] (the caller broadcasts it).
pub struct Batcher {
    tx: mpsc::Sender<Op>,
    max_queue_size: usize,
    task: JoinHandle<()>,
}

impl Batcher {
    /// Starts the batching task on `store`. `cfg` must be enabled ([`BatchingConfig::enabled`]).
    pub fn spawn(
        store: CrdtStore,
        cfg: BatchingConfig,
        published: mpsc::Sender<Published>,
    ) -> Result<Self, CrdtError> {
        if !cfg.enabled() {
            return Err(CrdtError::Config(
                "batching needs both max_batch_size and max_batch_age above zero (or write without a Batcher)".into(),
            ));
        }
        let (tx, rx) = mpsc::channel(cfg.max_queue_size);
        let max_queue_size = cfg.max_queue_size;
        let task = tokio::spawn(run(store, cfg, rx, published));
        Ok(Self {
            tx,
            max_queue_size,
            task,
        })
    }

    /// Queues an operation. Fails at once when `max_queue_size` operations are waiting.
    pub fn submit(&self, op: Op) -> Result<(), CrdtError> {
        self.tx.try_send(op).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => CrdtError::QueueFull {
                max_queue_size: self.max_queue_size,
            },
            mpsc::error::TrySendError::Closed(_) => CrdtError::ShuttingDown,
        })
    }

    /// Stops accepting operations, commits what is queued, and waits for the task.
    pub async fn shutdown(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

async fn run(
    store: CrdtStore,
    cfg: BatchingConfig,
    mut rx: mpsc::Receiver<Op>,
    published: mpsc::Sender<Published>,
) {
    let max_delta = store.config().max_batch_delta_size;
    let mut batch = Batch::new();
    let mut deadline: Option<Instant> = None;
    loop {
        let op = match deadline {
            Some(d) => tokio::select! {
                op = rx.recv() => op,
                _ = tokio::time::sleep_until(d) => {
                    commit(&store, &mut batch, &published, "max age").await;
                    deadline = (!batch.is_empty()).then(|| Instant::now() + cfg.max_batch_age);
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(op) = op else {
            // Shutting down: commit what is left.
            commit(&store, &mut batch, &published, "shutdown").await;
            return;
        };
        let res = match op {
            Op::Put { key, value } => batch.put(&key, value),
            Op::Delete { key } => store.batch_delete(&mut batch, &key),
        };
        if let Err(e) = res {
            tracing::error!(error = %e, "could not add an operation to the crdt batch");
            continue;
        }
        if deadline.is_none() {
            deadline = Some(Instant::now() + cfg.max_batch_age);
        }
        if batch.len() >= cfg.max_batch_size || batch.encoded_len() > max_delta {
            commit(&store, &mut batch, &published, "size").await;
            deadline = (!batch.is_empty()).then(|| Instant::now() + cfg.max_batch_age);
        }
    }
}

/// Commits the batch; on failure keeps it to retry at the next trigger (no update lost).
async fn commit(
    store: &CrdtStore,
    batch: &mut Batch,
    published: &mpsc::Sender<Published>,
    why: &str,
) {
    if batch.is_empty() {
        return;
    }
    let ops = batch.len();
    match store.commit(batch.clone()).await {
        Ok(p) => {
            *batch = Batch::new();
            tracing::info!(ops, reason = why, "crdt batch commit");
            if let Some(p) = p {
                let _ = published.send(p).await;
            }
        }
        Err(e) => tracing::error!(error = %e, ops, "crdt batch commit failed; retrying later"),
    }
}
