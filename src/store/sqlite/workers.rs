//! The threads that own the embedded store's connections. One writer commits in groups: it
//! takes every write waiting at that moment and runs them in one transaction, each inside its own
//! savepoint, so one write's failure (a duplicate `(user_id, seq)`) fails that write alone and
//! every caller learns its own outcome once the group is committed. A few readers serve reads
//! from their own connections (WAL lets them read while the writer writes). Both queues are
//! bounded: when storage falls behind, a write is refused at once as unavailable instead of
//! waiting behind an ever longer line.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::map_err;
use crate::store::{StoreError, StoreResult};

/// Writes that may wait for the writer; one more is refused as unavailable.
const WRITE_QUEUE: usize = 16_384;
/// Reads that may wait for a reader.
const READ_QUEUE: usize = 16_384;
/// Most writes committed in one transaction.
const MAX_GROUP: usize = 1_024;

/// What a queued write does once the group's commit is known: answers its caller.
type Answer = Box<dyn FnOnce(&Result<(), StoreError>) + Send>;
/// A queued write: runs its statements on the writer's connection (or, given none, is refused)
/// and returns how to answer its caller.
type WriteJob = Box<dyn FnOnce(Option<&Connection>) -> Answer + Send>;
/// A queued read.
type ReadJob = Box<dyn FnOnce(&Connection) + Send>;

/// The sending ends of the queues; the threads stop when these are dropped.
pub struct Workers {
    writes: SyncSender<WriteJob>,
    reads: SyncSender<ReadJob>,
}

impl Workers {
    /// Starts the writer on `writer` and one reader thread per connection of `readers`.
    pub fn start(writer: Connection, readers: Vec<Connection>) -> std::io::Result<Workers> {
        Workers::start_with_queue(writer, readers, WRITE_QUEUE)
    }

    /// [`Workers::start`] with room for `waiting_writes` in the write queue.
    fn start_with_queue(
        writer: Connection,
        readers: Vec<Connection>,
        waiting_writes: usize,
    ) -> std::io::Result<Workers> {
        let (writes, write_queue) = sync_channel::<WriteJob>(waiting_writes);
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_groups(writer, write_queue))?;
        let (reads, read_queue) = sync_channel::<ReadJob>(READ_QUEUE);
        let read_queue = Arc::new(Mutex::new(read_queue));
        for (n, conn) in readers.into_iter().enumerate() {
            let queue = read_queue.clone();
            std::thread::Builder::new()
                .name(format!("sqlite-reader-{n}"))
                .spawn(move || serve_reads(conn, &queue))?;
        }
        Ok(Workers { writes, reads })
    }

    /// Runs `f` in the next committed group; its result counts only if the group commits.
    pub async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: WriteJob = Box::new(move |conn| {
            let outcome = match conn {
                Some(conn) => in_savepoint(conn, f),
                None => Err(StoreError::Unavailable("the write was not run: its group failed".into())),
            };
            Box::new(move |commit: &Result<(), StoreError>| {
                let answer = match (outcome, commit) {
                    (Ok(value), Ok(())) => Ok(value),
                    (Ok(_), Err(e)) => Err(e.clone()),
                    (Err(e), _) => Err(e),
                };
                let _ = tx.send(answer);
            })
        });
        enqueue(&self.writes, job)?;
        rx.await.map_err(|_| StoreError::Unavailable("the writer stopped".into()))?
    }

    /// Runs `f` on a reader's connection.
    pub async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        enqueue(
            &self.reads,
            Box::new(move |conn| {
                let _ = tx.send(f(conn).map_err(map_err));
            }),
        )?;
        rx.await.map_err(|_| StoreError::Unavailable("the readers stopped".into()))?
    }
}

fn enqueue<J>(queue: &SyncSender<J>, job: J) -> StoreResult<()> {
    queue.try_send(job).map_err(|e| match e {
        TrySendError::Full(_) => {
            StoreError::Unavailable("storage is falling behind: the queue is full".into())
        }
        TrySendError::Disconnected(_) => StoreError::Unavailable("storage is closed".into()),
    })
}

/// Runs `f` inside a savepoint: all of its statements count, or none (a later one's failure
/// rolls back the earlier ones, and the rest of the group goes on).
fn in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> StoreResult<T> {
    conn.execute_batch("SAVEPOINT job").map_err(map_err)?;
    match f(conn) {
        Ok(value) => {
            conn.execute_batch("RELEASE job").map_err(map_err)?;
            Ok(value)
        }
        Err(e) => {
            // Outside a transaction (SQLite rolled it back by itself) there is nothing to undo.
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
            }
            Err(map_err(e))
        }
    }
}

/// The writer's loop: a group is every write waiting when the previous group ended.
fn write_groups(conn: Connection, queue: Receiver<WriteJob>) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        crate::metrics::record_write_group(group.len());
        let began = conn.execute_batch("BEGIN IMMEDIATE").map_err(map_err);
        let mut answers = Vec::with_capacity(group.len());
        let mut jobs = group.into_iter();
        if began.is_ok() {
            for job in jobs.by_ref() {
                answers.push(job(Some(&conn)));
                // A write whose error made SQLite roll the whole transaction back (disk full,
                // I/O) ends the group: nothing of it stands, and the rest is not run.
                if conn.is_autocommit() {
                    break;
                }
            }
        }
        let committed = match began {
            Err(e) => Err(e),
            Ok(()) if conn.is_autocommit() => {
                Err(StoreError::Unavailable("the transaction was rolled back".into()))
            }
            Ok(()) => conn.execute_batch("COMMIT").map_err(map_err),
        };
        if committed.is_err() && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for answer in answers {
            answer(&committed);
        }
        for refused in jobs {
            refused(None)(&committed);
        }
    }
}

/// A reader's loop: the next read waiting, on this thread's connection.
fn serve_reads(conn: Connection, queue: &Mutex<Receiver<ReadJob>>) {
    loop {
        // The lock is held only while waiting for one job, never while running it.
        let next = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        match next {
            Ok(job) => job(&conn),
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future as _;

    use super::*;

    fn connections(dir: &std::path::Path, readers: usize) -> (Connection, Vec<Connection>) {
        let path = dir.join("t.db");
        let writer = Connection::open(&path).unwrap();
        writer.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t (id INTEGER PRIMARY KEY)").unwrap();
        (writer, (0..readers).map(|_| Connection::open(&path).unwrap()).collect())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_duplicate_in_a_group_fails_alone_and_every_caller_learns_its_own_outcome() {
        let dir = tempfile::TempDir::new().unwrap();
        let (writer, readers) = connections(dir.path(), 2);
        let workers = Arc::new(Workers::start(writer, readers).unwrap());
        // 200 concurrent inserts of 100 ids, each twice: groups form, and in each pair one wins.
        let tasks: Vec<_> = (0..200)
            .map(|n| {
                let workers = workers.clone();
                tokio::spawn(async move {
                    workers
                        .write(move |c| c.execute("INSERT INTO t (id) VALUES (?1)", [n % 100]).map(drop))
                        .await
                })
            })
            .collect();
        let mut inserted = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => inserted += 1,
                Err(StoreError::Duplicate) => {}
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(inserted, 100, "one insert per id succeeded");
        let rows: i64 =
            workers.read(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))).await.unwrap();
        assert_eq!(rows, 100, "and every success is committed and visible to readers");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_of_several_statements_stands_or_falls_whole() {
        let dir = tempfile::TempDir::new().unwrap();
        let (writer, readers) = connections(dir.path(), 1);
        let workers = Workers::start(writer, readers).unwrap();
        workers.write(|c| c.execute("INSERT INTO t (id) VALUES (1)", []).map(drop)).await.unwrap();
        let both = workers
            .write(|c| {
                c.execute("INSERT INTO t (id) VALUES (2)", [])?;
                c.execute("INSERT INTO t (id) VALUES (1)", []).map(drop)
            })
            .await;
        assert!(matches!(both, Err(StoreError::Duplicate)), "{both:?}");
        let ids: Vec<i64> = workers
            .read(|c| c.prepare("SELECT id FROM t ORDER BY id")?.query_map([], |r| r.get(0))?.collect())
            .await
            .unwrap();
        assert_eq!(ids, [1], "the first statement of the failed write was rolled back with it");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn when_the_write_queue_is_full_a_write_is_refused_at_once_as_unavailable() {
        let dir = tempfile::TempDir::new().unwrap();
        let (writer, readers) = connections(dir.path(), 1);
        let workers = Arc::new(Workers::start_with_queue(writer, readers, 2).unwrap());
        // One write holds the writer until released; two more fill the queue; the next is refused.
        let (started_tx, started) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let blocking = {
            let workers = workers.clone();
            tokio::spawn(async move {
                workers
                    .write(move |_| {
                        started_tx.send(()).unwrap();
                        released.recv().unwrap();
                        Ok(())
                    })
                    .await
            })
        };
        tokio::task::spawn_blocking(move || started.recv().unwrap()).await.unwrap();
        // A write is queued when its future is first polled; poll each once, then keep it.
        let mut queued = Vec::new();
        for n in 0..2 {
            let mut write =
                Box::pin(workers.write(move |c| c.execute("INSERT INTO t (id) VALUES (?1)", [n]).map(drop)));
            let first = std::future::poll_fn(|cx| std::task::Poll::Ready(write.as_mut().poll(cx))).await;
            assert!(first.is_pending(), "write {n} waits in the queue: {first:?}");
            queued.push(write);
        }
        // Refused at once: the first poll answers (were it queued, it would wait for the writer).
        let mut refused =
            Box::pin(workers.write(|c| c.execute("INSERT INTO t (id) VALUES (9)", []).map(drop)));
        let refused = std::future::poll_fn(|cx| std::task::Poll::Ready(refused.as_mut().poll(cx))).await;
        assert!(matches!(refused, std::task::Poll::Ready(Err(StoreError::Unavailable(_)))), "{refused:?}");
        release.send(()).unwrap();
        blocking.await.unwrap().unwrap();
        for write in queued {
            write.await.unwrap();
        }
    }
}
