//! Grouped inserts for MongoDB: the hot inserts (ledger entries, chat messages) go to one task
//! that takes every insert waiting at that moment and sends each collection's share as one
//! unordered `insert_many`. Each caller still learns its own outcome: a duplicate key fails that
//! document alone (the server reports it by index). The queue is bounded: when the server falls
//! behind, an insert is refused at once as unavailable.

use std::collections::BTreeMap;

use mongodb::Database;
use mongodb::bson::Document;
use mongodb::error::ErrorKind;
use tokio::sync::{mpsc, oneshot};

use super::{DUPLICATE_KEY, map_err};
use crate::store::{StoreError, StoreResult};

/// Inserts that may wait; one more is refused as unavailable.
const QUEUE: usize = 16_384;
/// Most inserts sent in one group.
const MAX_GROUP: usize = 1_024;

/// One insert waiting for its group.
struct Insert {
    collection: &'static str,
    doc: Document,
    answer: oneshot::Sender<StoreResult<()>>,
}

/// The sending end of the insert queue; the task ends when every clone of the store is dropped.
#[derive(Debug, Clone)]
pub(super) struct InsertBatcher {
    queue: mpsc::Sender<Insert>,
}

impl std::fmt::Debug for Insert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.collection)
    }
}

impl InsertBatcher {
    /// Starts the grouping task on the current Tokio runtime.
    pub(super) fn start(db: Database) -> InsertBatcher {
        let (queue, waiting) = mpsc::channel(QUEUE);
        tokio::spawn(insert_groups(db, waiting));
        InsertBatcher { queue }
    }

    /// Inserts `doc` into `collection` with the next group.
    pub(super) async fn insert(&self, collection: &'static str, doc: Document) -> StoreResult<()> {
        let (answer, outcome) = oneshot::channel();
        self.queue.try_send(Insert { collection, doc, answer }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                StoreError::Unavailable("storage is falling behind: the insert queue is full".into())
            }
            mpsc::error::TrySendError::Closed(_) => StoreError::Unavailable("storage is closed".into()),
        })?;
        outcome.await.map_err(|_| StoreError::Unavailable("the insert task stopped".into()))?
    }
}

async fn insert_groups(db: Database, mut waiting: mpsc::Receiver<Insert>) {
    while let Some(first) = waiting.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match waiting.try_recv() {
                Ok(insert) => group.push(insert),
                Err(_) => break,
            }
        }
        crate::metrics::record_write_group(group.len());
        let mut by_collection: BTreeMap<&'static str, Vec<Insert>> = BTreeMap::new();
        for insert in group {
            by_collection.entry(insert.collection).or_default().push(insert);
        }
        for (collection, inserts) in by_collection {
            insert_many(&db, collection, inserts).await;
        }
    }
}

/// One unordered `insert_many`, and each insert's own outcome.
async fn insert_many(db: &Database, collection: &str, inserts: Vec<Insert>) {
    let (docs, answers): (Vec<Document>, Vec<_>) = inserts.into_iter().map(|i| (i.doc, i.answer)).unzip();
    let result = db.collection::<Document>(collection).insert_many(docs).ordered(false).await;
    let mut outcomes: Vec<StoreResult<()>> = vec![Ok(()); answers.len()];
    if let Err(e) = result {
        match &*e.kind {
            ErrorKind::InsertMany(failure) if failure.write_concern_error.is_none() => {
                for write_error in failure.write_errors.iter().flatten() {
                    if let Some(outcome) = outcomes.get_mut(write_error.index) {
                        *outcome = Err(if write_error.code == DUPLICATE_KEY {
                            StoreError::Duplicate
                        } else {
                            StoreError::Internal(format!("insert failed with code {}", write_error.code))
                        });
                    }
                }
            }
            // The server did not say which documents stand: every caller checks or retries.
            _ => outcomes.fill(Err(map_err(e.clone()))),
        }
    }
    for (answer, outcome) in answers.into_iter().zip(outcomes) {
        let _ = answer.send(outcome);
    }
}
