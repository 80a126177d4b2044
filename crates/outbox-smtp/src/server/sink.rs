//! Where accepted messages go: the [`MessageSink`] trait and the in-memory [`MemorySink`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;

use tokio::sync::watch;

use crate::reply::Reply;

/// The envelope of one accepted transaction (RFC 5321 §2.3.1), with what the server knows
/// about the session it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedEnvelope {
    /// The reverse-path from `MAIL FROM`, empty for the null sender.
    pub mail_from: String,
    /// The accepted forward-paths, in `RCPT TO` order.
    pub rcpt_to: Vec<String>,
    /// The name the client gave in `EHLO`/`HELO`.
    pub helo: String,
    /// The client's address.
    pub peer: SocketAddr,
    /// The user name the client authenticated as, if it did.
    pub authenticated: Option<String>,
    /// Whether the session was protected by STARTTLS.
    pub tls: bool,
    /// The server-wide number of the connection (1 for the first accepted).
    pub connection: u64,
}

/// A boxed future, so that [`MessageSink`] can be used as `Arc<dyn MessageSink>`. Its
/// output is the id the message was stored under (named in the `250` reply) or the reply
/// that refuses it.
pub type DeliverFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<String>, Reply>> + Send + 'a>>;

/// Receives each message the server accepts.
///
/// The server answers the end of DATA with `250` only after `deliver` returns `Ok`, so an
/// implementation can make the message durable first; an `Err` reply is sent to the client
/// as it is (e.g. `451 4.3.0` when the store is unavailable). `Ok(Some(id))` is answered
/// `250 2.0.0 Ok: queued as ID` (as Postfix does), `Ok(None)` `250 2.0.0 Ok: queued`.
pub trait MessageSink: Send + Sync {
    /// Takes one message: its envelope and its text (dot-unstuffed, CRLF line ends as sent).
    fn deliver(&self, envelope: ReceivedEnvelope, data: Vec<u8>) -> DeliverFuture<'_>;

    /// Checks the reverse-path of `MAIL FROM` (empty for the null sender) before the server
    /// answers `250`; an `Err` reply refuses the command. Default: every path is accepted.
    fn check_sender(&self, address: &str) -> Result<(), Reply> {
        let _ = address;
        Ok(())
    }

    /// Checks one forward-path of `RCPT TO` before the server answers `250`; an `Err` reply
    /// refuses that recipient alone, and the transaction goes on. Default: accepted.
    fn check_recipient(&self, address: &str) -> Result<(), Reply> {
        let _ = address;
        Ok(())
    }

    /// True when this sink takes mail for some recipients from clients that have not
    /// authenticated (a bounce domain): the server then lets such a client start a
    /// transaction, and takes only the recipients [`open_recipient`](Self::open_recipient)
    /// accepts. Default: false, every transaction needs AUTH when the server requires it.
    fn has_open_recipients(&self) -> bool {
        false
    }

    /// True when `address` may be given by a client that has not authenticated (when the
    /// server requires AUTH): every other recipient of such a client is refused with
    /// `530 5.7.0`, so the server stays a closed relay. Default: none.
    fn open_recipient(&self, address: &str) -> bool {
        let _ = address;
        false
    }
}

/// One message recorded by a [`MemorySink`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// Its envelope.
    pub envelope: ReceivedEnvelope,
    /// Its text, as handed to the sink.
    pub data: Vec<u8>,
}

/// A sink that keeps every message in memory, for tests. [`MemorySink::wait_for`] waits for
/// a number of messages without polling or sleeping.
#[derive(Debug)]
pub struct MemorySink {
    messages: Mutex<Vec<ReceivedMessage>>,
    count: watch::Sender<usize>,
}

impl Default for MemorySink {
    fn default() -> Self {
        MemorySink::new()
    }
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> MemorySink {
        MemorySink {
            messages: Mutex::new(Vec::new()),
            count: watch::Sender::new(0),
        }
    }

    /// Every message received so far, in the order the server accepted them.
    pub fn messages(&self) -> Vec<ReceivedMessage> {
        self.lock().clone()
    }

    /// How many messages have been received.
    pub fn len(&self) -> usize {
        *self.count.borrow()
    }

    /// Whether no message has been received.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until at least `n` messages have arrived and returns all of them. Tests should
    /// wrap this in `tokio::time::timeout` so a missing message fails instead of hanging.
    pub async fn wait_for(&self, n: usize) -> Vec<ReceivedMessage> {
        let mut receiver = self.count.subscribe();
        // The sender lives as long as `self`, so waiting cannot fail.
        let _ = receiver.wait_for(|count| *count >= n).await;
        self.messages()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ReceivedMessage>> {
        // A panic while holding the lock cannot leave the Vec half-updated (push is atomic
        // from the reader's view), so a poisoned lock is still usable.
        self.messages
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl MessageSink for MemorySink {
    fn deliver(&self, envelope: ReceivedEnvelope, data: Vec<u8>) -> DeliverFuture<'_> {
        Box::pin(async move {
            let count = {
                let mut messages = self.lock();
                messages.push(ReceivedMessage { envelope, data });
                messages.len()
            };
            self.count.send_replace(count);
            Ok(None)
        })
    }
}
