//! The producers' requests as both backends' group commit sees them ([`crate::sqlite`]'s
//! and [`crate::postgres`]'s `group` modules): what a request asks for, and its answer
//! held until its group has committed.

use tokio::sync::oneshot;

use crate::StoreError;
use crate::model::{Enqueued, NewRecipient, RequestKey};
use crate::prepare::PreparedMessage;

/// One producer request waiting for a group.
pub(crate) enum Job {
    /// Prepared messages to insert (`enqueue::insert_messages`).
    Insert {
        messages: Vec<PreparedMessage>,
        key: Option<RequestKey>,
        reply: oneshot::Sender<Result<Vec<Enqueued>, StoreError>>,
    },
    /// Recipients to add to a message (`enqueue::add_recipients`).
    AddRecipients {
        message_id: String,
        recipients: Vec<NewRecipient>,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
}

/// A job's result, held until its group has committed.
pub(crate) enum Done {
    Insert(
        oneshot::Sender<Result<Vec<Enqueued>, StoreError>>,
        Result<Vec<Enqueued>, StoreError>,
    ),
    /// The reply, the result, and the message the recipients were added to.
    AddRecipients(
        oneshot::Sender<Result<u64, StoreError>>,
        Result<u64, StoreError>,
        String,
    ),
}

impl Done {
    pub(crate) fn is_ok(&self) -> bool {
        match self {
            Done::Insert(_, result) => result.is_ok(),
            Done::AddRecipients(_, result, _) => result.is_ok(),
        }
    }

    /// The id to name in the group's notification, if this job queued something new
    /// (a message, or recipients of one) that engines should wake for.
    pub(crate) fn new_id(&self) -> Option<&str> {
        match self {
            Done::Insert(_, Ok(enqueued)) => {
                enqueued.iter().find(|e| !e.existing).map(|e| e.id.as_str())
            }
            Done::AddRecipients(_, Ok(added), id) if *added > 0 => Some(id),
            _ => None,
        }
    }

    /// Replaces a success with `error` (its group did not commit).
    pub(crate) fn fail(self, error: StoreError) -> Done {
        match self {
            Done::Insert(reply, Ok(_)) => Done::Insert(reply, Err(error)),
            Done::AddRecipients(reply, Ok(_), id) => Done::AddRecipients(reply, Err(error), id),
            failed => failed,
        }
    }

    pub(crate) fn send(self) {
        // A caller that went away no longer wants the answer; the rows are committed
        // either way.
        match self {
            Done::Insert(reply, result) => {
                let _ = reply.send(result);
            }
            Done::AddRecipients(reply, result, _) => {
                let _ = reply.send(result);
            }
        }
    }
}

/// The answers of a group that did not commit: every success so far becomes an error made
/// by `error`, and so does every job not run yet.
pub(crate) fn fail_all(
    not_run: Vec<Job>,
    done: Vec<Done>,
    error: impl Fn() -> StoreError,
) -> Vec<Done> {
    let mut out: Vec<Done> = done.into_iter().map(|d| d.fail(error())).collect();
    out.extend(not_run.into_iter().map(|job| match job {
        Job::Insert { reply, .. } => Done::Insert(reply, Err(error())),
        Job::AddRecipients {
            reply, message_id, ..
        } => Done::AddRecipients(reply, Err(error()), message_id),
    }));
    out
}
