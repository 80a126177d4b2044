//! Group commit of the producers' writes (enqueue, add recipients) on PostgreSQL.
//!
//! PostgreSQL already shares WAL flushes between connections, but each single enqueue
//! still costs its own `BEGIN`, statements, `COMMIT` round trips and a pool connection.
//! Concurrent producers in one process (the HTTP API's POSTs, the SMTP listener's
//! sessions) therefore share transactions: a request joins the queue of waiting requests;
//! if fewer than [`MAX_COMMITTERS`] committers run, it starts one. A committer takes up to
//! [`MAX_GROUP`] waiting requests, runs them in one transaction, each after its own
//! `SAVEPOINT` (sent in the same pipeline as its first statement), sends one `NOTIFY`,
//! commits, and only then answers each caller: an id is still returned only after its
//! commit. One request's error (an idempotency conflict, an unknown message) rolls back to
//! its savepoint and fails that request alone; a failed commit fails its whole group.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use deadpool_postgres::{Client, Object, Pool};

use super::enqueue;
use super::listen::CHANNEL;
use crate::StoreError;
use crate::group_commit::{self, Done, Job};

/// Committers running at once, each on its own pool connection (the pool holds 8; the
/// engine needs some).
const MAX_COMMITTERS: usize = 3;

/// Requests per group. Each one is a subtransaction that writes; PostgreSQL caches 64
/// subtransaction ids per transaction, and more would slow every other session's
/// visibility checks while the transaction runs.
const MAX_GROUP: usize = 60;

/// The queue of waiting producer requests and the committers' state.
pub(super) struct GroupCommit {
    state: Mutex<State>,
    commits: AtomicU64,
    waiting: AtomicU64,
}

struct State {
    pending: VecDeque<Job>,
    committers: usize,
}

impl GroupCommit {
    pub(super) fn new() -> Self {
        GroupCommit {
            state: Mutex::new(State {
                pending: VecDeque::new(),
                committers: 0,
            }),
            commits: AtomicU64::new(0),
            waiting: AtomicU64::new(0),
        }
    }

    /// Group transactions committed or attempted so far.
    pub(super) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Requests submitted and not answered yet.
    pub(super) fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// The next group, or `None` (and one committer less) when nothing waits.
    fn next_group(&self) -> Option<Vec<Job>> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.pending.is_empty() {
            state.committers -= 1;
            return None;
        }
        let n = state.pending.len().min(MAX_GROUP);
        Some(state.pending.drain(..n).collect())
    }
}

/// Queues `job` and starts a committer if fewer than [`MAX_COMMITTERS`] run. The job's
/// reply channel answers after its group committed (or failed).
pub(super) fn submit(group: &Arc<GroupCommit>, pool: &Pool, job: Job) {
    group.waiting.fetch_add(1, Ordering::Relaxed);
    let start = {
        let mut state = group.state.lock().unwrap_or_else(|p| p.into_inner());
        state.pending.push_back(job);
        let start = state.committers < MAX_COMMITTERS;
        if start {
            state.committers += 1;
        }
        start
    };
    if start {
        tokio::spawn(run(Arc::clone(group), pool.clone()));
    }
}

/// Commits groups until no request waits.
async fn run(group: Arc<GroupCommit>, pool: Pool) {
    // Should this task panic or be dropped with its runtime, the next request must be
    // able to start a committer; the jobs it held are dropped, which their callers see
    // as a failed worker.
    struct Stop<'a>(&'a GroupCommit, bool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            if !self.1 {
                let mut state = self.0.state.lock().unwrap_or_else(|p| p.into_inner());
                state.committers -= 1;
            }
        }
    }
    let mut stop = Stop(&group, false);
    while let Some(jobs) = group.next_group() {
        let count = jobs.len() as u64;
        let done = commit_group(&pool, jobs).await;
        group.commits.fetch_add(1, Ordering::Relaxed);
        group.waiting.fetch_sub(count, Ordering::Relaxed);
        for d in done {
            d.send();
        }
    }
    // `next_group` counted this committer out.
    stop.1 = true;
}

/// Runs `jobs` in one transaction, each after its own savepoint, and commits. The
/// transaction is driven by hand so that `BEGIN` travels with the first request's
/// statements and the `NOTIFY` with `COMMIT`: a group of one costs two round trips.
async fn commit_group(pool: &Pool, jobs: Vec<Job>) -> Vec<Done> {
    let client = match pool.get().await {
        Ok(client) => InTransaction(Some(client)),
        Err(err) => return fail_all(jobs, Vec::new(), &StoreError::from(err)),
    };
    let mut done = Vec::with_capacity(jobs.len());
    let mut jobs = jobs.into_iter();
    while let Some(job) = jobs.next() {
        let savepoint = format!("producer_{}", done.len());
        let open = if done.is_empty() {
            format!("BEGIN; SAVEPOINT {savepoint}")
        } else {
            format!("SAVEPOINT {savepoint}")
        };
        // Sent first, in the same pipeline as the job's first statement.
        let (opened, result) =
            futures_util::future::join(client.batch_execute(&open), run_job(&client, job)).await;
        if let Err(err) = opened {
            let failed = fail_all(jobs.collect(), vec![result], &err.into());
            return abort(client, done.into_iter().chain(failed).collect()).await;
        }
        if !result.is_ok()
            && let Err(err) = client
                .batch_execute(&format!("ROLLBACK TO SAVEPOINT {savepoint}"))
                .await
        {
            done.push(result);
            let failed = fail_all(jobs.collect(), done, &err.into());
            return abort(client, failed).await;
        }
        done.push(result);
    }
    // Ids are ULIDs (checked letters and digits), safe inside a literal.
    let close = match done.iter().find_map(|d| d.new_id()) {
        Some(id) => format!("SELECT pg_notify('{CHANNEL}', '{id}'); COMMIT"),
        None => "COMMIT".to_string(),
    };
    match client.batch_execute(&close).await {
        Ok(()) => {
            client.release();
            done
        }
        Err(err) => {
            let failed = fail_all(Vec::new(), done, &err.into());
            abort(client, failed).await
        }
    }
}

/// Rolls back a group that failed before its commit, so that the connection goes back to
/// the pool outside any transaction; a connection that cannot even roll back is closed
/// instead of going back.
async fn abort(client: InTransaction, failed: Vec<Done>) -> Vec<Done> {
    if client.batch_execute("ROLLBACK").await.is_ok() {
        client.release();
    }
    failed
}

/// A pool connection with the group's transaction open on it. Dropped without
/// [`release`](InTransaction::release) (an error path that could not roll back, or the
/// committer task dropped mid-transaction), it closes the connection rather than return
/// it to the pool with the transaction open.
struct InTransaction(Option<Client>);

impl InTransaction {
    /// Returns the connection to the pool: its transaction is over.
    fn release(mut self) {
        self.0.take();
    }
}

impl std::ops::Deref for InTransaction {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.0
            .as_ref()
            .expect("the connection is held until released")
    }
}

impl Drop for InTransaction {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop(Object::take(client));
        }
    }
}

/// Runs one job inside the group's transaction.
async fn run_job(tx: &Client, job: Job) -> Done {
    match job {
        Job::Insert {
            messages,
            key,
            reply,
        } => Done::Insert(
            reply,
            enqueue::insert_messages(tx, messages, key.as_ref()).await,
        ),
        Job::AddRecipients {
            message_id,
            recipients,
            reply,
        } => {
            let added = enqueue::add_recipients(tx, &message_id, recipients).await;
            Done::AddRecipients(reply, added, message_id)
        }
    }
}

/// The answers of a group that did not commit: every success so far becomes `error`, and
/// so does every job not run yet.
fn fail_all(not_run: Vec<Job>, done: Vec<Done>, error: &StoreError) -> Vec<Done> {
    group_commit::fail_all(not_run, done, || {
        StoreError::Worker(format!("the group's transaction failed: {error}"))
    })
}
