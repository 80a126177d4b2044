//! A transport wrapper that counts the connections the engine holds open at once, in total
//! and per host, on the engine's side: a server's own count lags (a session ends a moment
//! after its client has closed), so on a loaded machine it can overlap one closing
//! connection with the next one opened.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use outbox_queue::engine::{
    BoxFuture, Connection, Route, TransactionReport, Transport, TransportError,
};

/// Open and most-at-once connections: in total, and per host (`Connection::host`).
#[derive(Default)]
struct Counts {
    total: (usize, usize),
    hosts: HashMap<String, (usize, usize)>,
}

/// Wraps a transport, counting its connections.
pub struct Counting {
    inner: Arc<dyn Transport>,
    counts: Arc<Mutex<Counts>>,
}

impl Counting {
    pub fn new(inner: Arc<dyn Transport>) -> Arc<Counting> {
        Arc::new(Counting {
            inner,
            counts: Arc::default(),
        })
    }

    /// The most connections open at once, to any host.
    pub fn max_total(&self) -> usize {
        self.counts.lock().unwrap().total.1
    }

    /// The most connections open at once to hosts whose name contains `part` (an address
    /// such as `[127.0.0.2]`).
    pub fn max_to(&self, part: &str) -> usize {
        let counts = self.counts.lock().unwrap();
        counts
            .hosts
            .iter()
            .filter(|(host, _)| host.contains(part))
            .map(|(_, (_, max))| *max)
            .sum()
    }
}

impl Transport for Counting {
    fn mx_hosts<'a>(&'a self, route: &'a Route) -> BoxFuture<'a, Option<Vec<String>>> {
        self.inner.mx_hosts(route)
    }

    fn connect<'a>(
        &'a self,
        route: &'a Route,
    ) -> BoxFuture<'a, Result<Box<dyn Connection>, TransportError>> {
        Box::pin(async move {
            let inner = self.inner.connect(route).await?;
            let host = inner.host();
            {
                let mut counts = self.counts.lock().unwrap();
                counts.total.0 += 1;
                counts.total.1 = counts.total.1.max(counts.total.0);
                let entry = counts.hosts.entry(host.clone()).or_default();
                entry.0 += 1;
                entry.1 = entry.1.max(entry.0);
            }
            let guard = OpenGuard {
                host,
                counts: self.counts.clone(),
            };
            Ok(Box::new(Counted { inner, guard }) as Box<dyn Connection>)
        })
    }
}

/// Counts its connection closed when dropped.
struct OpenGuard {
    host: String,
    counts: Arc<Mutex<Counts>>,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap();
        counts.total.0 -= 1;
        if let Some(entry) = counts.hosts.get_mut(&self.host) {
            entry.0 -= 1;
        }
    }
}

struct Counted {
    inner: Box<dyn Connection>,
    guard: OpenGuard,
}

impl Connection for Counted {
    fn host(&self) -> String {
        self.inner.host()
    }

    fn send<'a>(
        &'a mut self,
        from: &'a str,
        recipients: &'a [&'a str],
        data: &'a [u8],
    ) -> BoxFuture<'a, Result<TransactionReport, TransportError>> {
        self.inner.send(from, recipients, data)
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        let Counted { inner, guard } = *self;
        Box::pin(async move {
            inner.close().await;
            drop(guard);
        })
    }
}
