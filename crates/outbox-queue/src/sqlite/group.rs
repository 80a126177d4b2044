//! Group commit of the producers' writes (enqueue, add recipients) on SQLite.
//!
//! A durable commit costs an fsync, whatever it holds. Concurrent producers in one
//! process (the HTTP API's POSTs, the SMTP listener's sessions) therefore share one:
//! a request joins the queue of waiting requests; if no committer runs, it starts one
//! on the blocking pool. The committer takes every waiting request, runs them in one
//! `BEGIN IMMEDIATE` transaction, each inside its own `SAVEPOINT`, commits, and only then
//! answers each caller: an id is still returned only after its commit. What arrives
//! while a commit runs forms the next group. One request's error (an idempotency
//! conflict, an unknown message) rolls back its savepoint and fails that request alone;
//! a failed commit fails every request of its group.
//!
//! Separate processes (`outbox send` each) cannot share a commit: each has its own store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::{Transaction, TransactionBehavior};

use super::{Inner, enqueue};
use crate::StoreError;
use crate::group_commit::{self, Done, Job};

/// The queue of waiting producer requests and the committer's state.
pub(super) struct GroupCommit {
    state: Mutex<State>,
    commits: AtomicU64,
    waiting: AtomicU64,
}

struct State {
    pending: Vec<Job>,
    committer_running: bool,
}

impl GroupCommit {
    pub(super) fn new() -> Self {
        GroupCommit {
            state: Mutex::new(State {
                pending: Vec::new(),
                committer_running: false,
            }),
            commits: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
        }
    }

    /// Group commits so far (each one transaction and one fsync).
    pub(super) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Requests submitted and not answered yet.
    pub(super) fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// Queues `job` and starts a committer if none runs. The job's reply channel answers
/// after its group committed (or failed).
pub(super) fn submit(inner: &Arc<Inner>, job: Job) {
    let group = &inner.group;
    group.waiting.fetch_add(1, Ordering::Relaxed);
    let start = {
        let mut state = group.state.lock().unwrap_or_else(|p| p.into_inner());
        state.pending.push(job);
        !std::mem::replace(&mut state.committer_running, true)
    };
    if start {
        let inner = Arc::clone(inner);
        tokio::task::spawn_blocking(move || run(&inner));
    }
}

/// Commits groups until no request waits.
fn run(inner: &Inner) {
    let group = &inner.group;
    // Whatever happens (a panic in a statement), the next request must be able to start
    // a committer, and the requests still queued must not wait forever: dropping them
    // drops their reply channels, which the callers see as a failed worker.
    struct Stop<'a>(&'a GroupCommit);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                // A normal return has reset the state under the lock already; a new
                // committer may be running by now.
                return;
            }
            let dropped = {
                let mut state = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
                state.committer_running = false;
                std::mem::take(&mut state.pending)
            };
            self.0
                .waiting
                .fetch_sub(dropped.len() as u64, Ordering::Relaxed);
        }
    }
    let _stop = Stop(group);
    loop {
        let jobs = {
            let mut state = group.state.lock().unwrap_or_else(|p| p.into_inner());
            if state.pending.is_empty() {
                state.committer_running = false;
                return;
            }
            std::mem::take(&mut state.pending)
        };
        let count = jobs.len() as u64;
        let done = commit_group(inner, jobs);
        group.commits.fetch_add(1, Ordering::Relaxed);
        group.waiting.fetch_sub(count, Ordering::Relaxed);
        for d in done {
            d.send();
        }
    }
}

/// Runs `jobs` in one transaction, each in its own savepoint, and commits.
fn commit_group(inner: &Inner, jobs: Vec<Job>) -> Vec<Done> {
    let mut conn = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(err) => return fail_all(jobs, Vec::new(), &StoreError::from(err)),
    };
    let mut done = Vec::with_capacity(jobs.len());
    let mut jobs = jobs.into_iter();
    while let Some(job) = jobs.next() {
        if let Err(err) = tx
            .prepare_cached("SAVEPOINT producer")
            .and_then(|mut s| s.execute([]))
        {
            let not_run = std::iter::once(job).chain(jobs).collect();
            return fail_all(not_run, done, &StoreError::from(err));
        }
        let result = run_job(&tx, job);
        let closed = if result.is_ok() {
            tx.prepare_cached("RELEASE producer")
                .and_then(|mut s| s.execute([]))
                .map(|_| ())
        } else {
            tx.execute_batch("ROLLBACK TO producer; RELEASE producer")
        };
        done.push(result);
        if let Err(err) = closed {
            return fail_all(jobs.collect(), done, &StoreError::from(err));
        }
        if tx.is_autocommit() {
            // SQLite rolled the whole transaction back (an I/O error, a full disk): what
            // the group did so far is gone.
            let err = StoreError::Worker(
                "SQLite rolled back the group's transaction after an error".to_string(),
            );
            return fail_all(jobs.collect(), done, &err);
        }
    }
    match tx.commit() {
        Ok(()) => done,
        Err(err) => fail_all(Vec::new(), done, &StoreError::from(err)),
    }
}

/// Runs one job inside the group's transaction.
fn run_job(tx: &Transaction<'_>, job: Job) -> Done {
    match job {
        Job::Insert {
            messages,
            key,
            reply,
        } => Done::Insert(reply, enqueue::insert_messages(tx, messages, key.as_ref())),
        Job::AddRecipients {
            message_id,
            recipients,
            reply,
        } => {
            let added = enqueue::add_recipients(tx, &message_id, recipients);
            Done::AddRecipients(reply, added, message_id)
        }
    }
}

/// The answers of a group that did not commit: every success so far becomes `error`, and
/// so does every job not run yet.
fn fail_all(not_run: Vec<Job>, done: Vec<Done>, error: &StoreError) -> Vec<Done> {
    group_commit::fail_all(not_run, done, || copy(error))
}

/// The same error for another caller of the group (store errors are not `Clone`): a
/// SQLite failure keeps its code and text, anything else its text.
fn copy(error: &StoreError) -> StoreError {
    match error {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(code, text)) => {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(*code, text.clone()))
        }
        other => StoreError::Worker(other.to_string()),
    }
}
