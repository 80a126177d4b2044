//! One SMTP session: the command loop, transaction state and replies (RFC 5321 §4.1, §3.3).

mod auth;
mod data;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::Shared;
use super::command::{Command, CommandError, Param, parse_command};
#[cfg(any(test, feature = "testing"))]
use super::fault::FaultAction;
use super::fault::Stage;
use super::lines::{
    Line, MAX_AUTH_LINE, MAX_COMMAND_LINE, ends_with_crlf, has_bare_cr, read_line, trim_line_end,
};
use crate::reply::Reply;

type Io<S> = BufReader<BufWriter<S>>;

/// What the command loop wants next.
enum Flow {
    Continue,
    Close,
    StartTls,
}

/// How a session on one stream ended.
enum Next<S> {
    Closed,
    StartTls(S),
}

/// What a fault rule decided for the current command. Without the `testing` feature no
/// rule exists, so only `Proceed` is ever made.
#[cfg_attr(not(any(test, feature = "testing")), allow(dead_code))]
enum FaultOutcome {
    /// No reply fault fired: reply normally.
    Proceed,
    /// The fault replaced the reply or dropped the connection.
    Done(Flow),
    /// Send 354, then close after this many octets of text.
    DropAfter(u64),
}

/// The state of the current mail transaction (RFC 5321 §3.3).
struct Transaction {
    from: String,
    recipients: Vec<String>,
    /// Started without the AUTH the server requires: only the sink's open recipients
    /// ([`MessageSink::open_recipient`](super::sink::MessageSink::open_recipient)) are taken.
    open_only: bool,
}

struct Session<'a> {
    shared: &'a Shared,
    peer: SocketAddr,
    id: u64,
    shutdown: watch::Receiver<bool>,
    helo: Option<String>,
    extended: bool,
    tls: bool,
    authenticated: Option<String>,
    /// After a non-2xx greeting only QUIT is served (RFC 5321 §3.1).
    rejecting: bool,
    transaction: Option<Transaction>,
    /// Commands since the connection opened or a message was last accepted.
    commands: u32,
    /// Error replies sent on this connection (see [`Session::send`]); atomic because
    /// `send` takes `&self` and the session future must be `Send`.
    errors: AtomicU32,
    /// Failed AUTH attempts on this connection.
    auth_failures: u32,
}

/// Serves one accepted connection to its end, upgrading to TLS on STARTTLS.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    shared: &Shared,
    shutdown: watch::Receiver<bool>,
) {
    let mut session = Session {
        shared,
        peer,
        id,
        shutdown,
        helo: None,
        extended: false,
        tls: false,
        authenticated: None,
        rejecting: false,
        transaction: None,
        commands: 0,
        errors: AtomicU32::new(0),
        auth_failures: 0,
    };
    let plain = match session.run(stream, true).await {
        Ok(Next::Closed) => return,
        Ok(Next::StartTls(plain)) => plain,
        Err(error) => {
            tracing::debug!(%peer, %error, "session ended");
            return;
        }
    };
    let Some(config) = shared.tls.clone() else {
        return;
    };
    let tls = match TlsAcceptor::from(config).accept(plain).await {
        Ok(tls) => tls,
        Err(error) => {
            tracing::debug!(%peer, %error, "TLS handshake failed");
            return;
        }
    };
    // RFC 3207 §4.2: after the handshake the server forgets everything learnt before it.
    session.tls = true;
    session.helo = None;
    session.extended = false;
    session.authenticated = None;
    session.transaction = None;
    if let Err(error) = session.run(tls, false).await {
        tracing::debug!(%peer, %error, "TLS session ended");
    }
}

fn reply(code: u16, text: impl Into<String>) -> Reply {
    Reply::new(code, [text.into()])
}

async fn write_reply<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Io<S>,
    reply: &Reply,
) -> std::io::Result<()> {
    io.write_all(reply.to_wire().as_bytes()).await
}

impl Session<'_> {
    /// Sends one reply, counting error replies for `max_errors`. Not counted: `421` (the
    /// server closes anyway) and `452` (too many recipients: a pipelining client may send
    /// many RCPT past the limit and is right to expect the transaction to go on).
    async fn send<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut Io<S>,
        reply: &Reply,
    ) -> std::io::Result<()> {
        if reply.code >= 400 && reply.code != 421 && reply.code != 452 {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        write_reply(io, reply).await
    }

    /// `421` and close when this connection has had too many error replies.
    async fn over_error_limit<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut Io<S>,
    ) -> std::io::Result<bool> {
        let Some(max) = self.shared.limits.max_errors else {
            return Ok(false);
        };
        if self.errors.load(Ordering::Relaxed) < max {
            return Ok(false);
        }
        tracing::info!(peer = %self.peer, errors = self.errors.load(Ordering::Relaxed), "too many errors, closing");
        let text = format!("4.7.0 {} Error: too many errors", self.shared.hostname);
        self.send(io, &reply(421, text)).await?;
        Ok(true)
    }

    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        stream: S,
        greet: bool,
    ) -> std::io::Result<Next<S>> {
        let mut io = BufReader::new(BufWriter::new(stream));
        let mut flow = if greet {
            self.greet(&mut io).await?
        } else {
            Flow::Continue
        };
        let mut line = Vec::new();
        while let Flow::Continue = flow {
            // PIPELINING (RFC 2920 §3.2): replies to a group of commands are sent together,
            // once every command the client has already sent has been answered.
            if io.buffer().is_empty() {
                io.flush().await?;
            }
            let timeout = self.shared.command_timeout;
            let read = tokio::select! {
                read = tokio::time::timeout(timeout, read_line(&mut io, &mut line, MAX_AUTH_LINE)) => read,
                () = super::stopped(&mut self.shutdown) => {
                    let text = format!("4.3.2 {} Service shutting down", self.shared.hostname);
                    self.send(&mut io, &reply(421, text)).await?;
                    break;
                }
            };
            flow = match read {
                Err(_elapsed) => {
                    let text = format!("4.4.2 {} Error: timeout exceeded", self.shared.hostname);
                    self.send(&mut io, &reply(421, text)).await?;
                    Flow::Close
                }
                Ok(Ok(Line::Eof)) => return Ok(Next::Closed),
                Ok(Ok(Line::TooLong)) => {
                    self.send(&mut io, &reply(500, "5.5.2 Line too long"))
                        .await?;
                    Flow::Continue
                }
                Ok(Ok(Line::Complete)) if !ends_with_crlf(&line) || has_bare_cr(&line) => {
                    // RFC 5321 §2.3.8: lines end in CRLF. A bare LF is refused here too, as
                    // Postfix's smtpd_forbid_bare_newline does, so that no two readers of
                    // one byte stream can disagree on where a command ends.
                    let text = format!("5.5.2 {} Error: bare <LF> received", self.shared.hostname);
                    self.send(&mut io, &reply(521, text)).await?;
                    Flow::Close
                }
                Ok(Ok(Line::Complete)) => {
                    let command = trim_line_end(&line).to_vec();
                    self.command(&mut io, &command).await?
                }
                Ok(Err(error)) => return Err(error),
            };
            if let Flow::Continue = flow
                && self.over_error_limit(&mut io).await?
            {
                flow = Flow::Close;
            }
        }
        io.flush().await?;
        match flow {
            Flow::StartTls => Ok(Next::StartTls(io.into_inner().into_inner())),
            _ => {
                let _ = io.shutdown().await;
                Ok(Next::Closed)
            }
        }
    }

    async fn greet<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io<S>,
    ) -> std::io::Result<Flow> {
        #[cfg(any(test, feature = "testing"))]
        match self.shared.faults.fire(Stage::Connect, None, &[]) {
            Some(FaultAction::Reply(greeting)) => {
                self.send(io, &greeting).await?;
                if greeting.code == 421 {
                    return Ok(Flow::Close);
                }
                self.rejecting = !greeting.is_success();
                return Ok(Flow::Continue);
            }
            Some(FaultAction::Drop) => return Ok(Flow::Close),
            Some(FaultAction::Stall(delay)) => tokio::time::sleep(delay).await,
            Some(FaultAction::DropMidData { .. } | FaultAction::BreakTls) | None => {}
        }
        let text = format!("{} ESMTP Outbox", self.shared.hostname);
        self.send(io, &reply(220, text)).await?;
        Ok(Flow::Continue)
    }

    /// Applies the first matching fault rule for `stage`.
    async fn fault<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        io: &mut Io<S>,
        stage: Stage,
        sender: Option<&str>,
        recipients: &[String],
    ) -> std::io::Result<FaultOutcome> {
        #[cfg(not(any(test, feature = "testing")))]
        {
            let _ = (io, stage, sender, recipients);
            Ok(FaultOutcome::Proceed)
        }
        #[cfg(any(test, feature = "testing"))]
        {
            let Some(action) = self.shared.faults.fire(stage, sender, recipients) else {
                return Ok(FaultOutcome::Proceed);
            };
            tracing::debug!(peer = %self.peer, ?stage, ?action, "fault fires");
            match action {
                FaultAction::Reply(fault_reply) => {
                    self.send(io, &fault_reply).await?;
                    Ok(FaultOutcome::Done(if fault_reply.code == 421 {
                        Flow::Close
                    } else {
                        Flow::Continue
                    }))
                }
                FaultAction::Drop => Ok(FaultOutcome::Done(Flow::Close)),
                FaultAction::Stall(delay) => {
                    io.flush().await?;
                    tokio::time::sleep(delay).await;
                    Ok(FaultOutcome::Proceed)
                }
                FaultAction::DropMidData { after_bytes } => {
                    Ok(FaultOutcome::DropAfter(after_bytes))
                }
                FaultAction::BreakTls => {
                    self.send(io, &reply(220, "2.0.0 Ready to start TLS"))
                        .await?;
                    // Not a TLS record: a client's handshake reads it as a corrupt message.
                    io.write_all(b"this is not TLS\r\n").await?;
                    Ok(FaultOutcome::Done(Flow::Close))
                }
            }
        }
    }

    async fn command<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io<S>,
        line: &[u8],
    ) -> std::io::Result<Flow> {
        self.commands = self.commands.saturating_add(1);
        if self
            .shared
            .limits
            .max_commands
            .is_some_and(|max| self.commands > max)
        {
            tracing::info!(peer = %self.peer, commands = self.commands, "too many commands, closing");
            let text = format!("4.7.0 {} Error: too many commands", self.shared.hostname);
            self.send(io, &reply(421, text)).await?;
            return Ok(Flow::Close);
        }
        let command = match parse_command(line) {
            Ok(command) => command,
            Err(error) => {
                let answer = match &error {
                    CommandError::Unknown { .. } => reply(500, "5.5.1 Command unrecognized"),
                    CommandError::Syntax { reason, .. } => reply(501, format!("5.5.4 {reason}")),
                    CommandError::NotText => reply(500, "5.5.2 Command is not text"),
                };
                self.send(io, &answer).await?;
                return Ok(Flow::Continue);
            }
        };
        // RFC 5321 §4.5.3.1.4 limits command lines to 512 octets; RFC 4954 §4 lets AUTH
        // lines carry longer initial responses.
        if line.len() + 2 > MAX_COMMAND_LINE && !matches!(command, Command::Auth { .. }) {
            self.send(io, &reply(500, "5.5.2 Line too long")).await?;
            return Ok(Flow::Continue);
        }
        if self.rejecting && command != Command::Quit {
            self.send(io, &reply(503, "5.5.1 Service not available, only QUIT"))
                .await?;
            return Ok(Flow::Continue);
        }
        match command {
            Command::Ehlo(domain) => self.ehlo(io, domain, true).await,
            Command::Helo(domain) => self.ehlo(io, domain, false).await,
            Command::Mail { from, params } => self.mail(io, from, params).await,
            Command::Rcpt { to, params } => self.rcpt(io, to, params).await,
            Command::Data => self.data(io).await,
            Command::Rset => {
                self.simple(io, Stage::Rset, true, reply(250, "2.0.0 Ok"))
                    .await
            }
            Command::Noop => {
                self.simple(io, Stage::Noop, false, reply(250, "2.0.0 Ok"))
                    .await
            }
            Command::Quit => {
                let bye = reply(221, "2.0.0 Bye");
                match self.simple(io, Stage::Quit, false, bye).await? {
                    Flow::Continue => Ok(Flow::Close),
                    other => Ok(other),
                }
            }
            Command::Vrfy => {
                let text = "2.1.5 Cannot VRFY user, but will accept message";
                self.send(io, &reply(252, text)).await?;
                Ok(Flow::Continue)
            }
            Command::Help => {
                self.send(io, &reply(214, "2.0.0 See RFC 5321")).await?;
                Ok(Flow::Continue)
            }
            Command::StartTls => self.starttls(io).await,
            Command::Auth { mechanism, initial } => self.auth(io, &mechanism, initial).await,
        }
    }

    /// RSET, NOOP and QUIT: a fault, else the normal reply.
    async fn simple<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io<S>,
        stage: Stage,
        reset: bool,
        normal: Reply,
    ) -> std::io::Result<Flow> {
        let (sender, recipients) = self.transaction_parts();
        match self
            .fault(io, stage, sender.as_deref(), &recipients)
            .await?
        {
            FaultOutcome::Done(flow) => return Ok(flow),
            FaultOutcome::Proceed | FaultOutcome::DropAfter(_) => {}
        }
        if reset {
            self.transaction = None;
        }
        self.send(io, &normal).await?;
        Ok(Flow::Continue)
    }

    fn transaction_parts(&self) -> (Option<String>, Vec<String>) {
        match &self.transaction {
            Some(t) => (Some(t.from.clone()), t.recipients.clone()),
            None => (None, Vec::new()),
        }
    }

    fn auth_offered(&self) -> bool {
        self.shared.authenticator.is_some() && (self.tls || !self.shared.auth_requires_tls)
    }

    /// EHLO/HELO (RFC 5321 §4.1.1.1): resets the transaction and lists the extensions.
    async fn ehlo<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io<S>,
        domain: String,
        extended: bool,
    ) -> std::io::Result<Flow> {
        if let FaultOutcome::Done(flow) = self.fault(io, Stage::Ehlo, None, &[]).await? {
            return Ok(flow);
        }
        self.transaction = None;
        self.helo = Some(domain);
        self.extended = extended;
        let greeting = format!("{} Hello {}", self.shared.hostname, self.peer.ip());
        if !extended {
            self.send(io, &reply(250, greeting)).await?;
            return Ok(Flow::Continue);
        }
        let mut lines = vec![greeting, "PIPELINING".to_string()];
        lines.push(match self.shared.max_size {
            Some(max) => format!("SIZE {max}"),
            None => "SIZE".to_string(),
        });
        lines.extend(["8BITMIME", "ENHANCEDSTATUSCODES", "SMTPUTF8"].map(String::from));
        if self.shared.tls.is_some() && !self.tls {
            lines.push("STARTTLS".to_string());
        }
        if self.auth_offered() {
            lines.push("AUTH PLAIN LOGIN".to_string());
        }
        self.send(io, &Reply::new(250, lines)).await?;
        Ok(Flow::Continue)
    }

    /// MAIL FROM (RFC 5321 §4.1.1.2), with SIZE (RFC 1870 §6), BODY (RFC 6152), SMTPUTF8
    /// (RFC 6531) and AUTH= (RFC 4954 §5) parameters.
    async fn mail<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io<S>,
        from: String,
        params: Vec<Param>,
    ) -> std::io::Result<Flow> {
        let needs_auth = self.shared.require_auth
            && self.authenticated.is_none()
            && !self
                .shared
                .trusted_networks
                .iter()
                .any(|n| n.contains(self.peer.ip()));
        let refusal = if self.helo.is_none() {
            Some(reply(503, "5.5.1 Send EHLO or HELO first"))
        } else if self.transaction.is_some() {
            Some(reply(503, "5.5.1 Nested MAIL command"))
        } else if needs_auth && !self.shared.sink.has_open_recipients() {
            Some(reply(530, "5.7.0 Authentication required"))
        } else {
            self.check_mail_params(&params)
                .or_else(|| self.shared.sink.check_sender(&from).err())
        };
        if let Some(refusal) = refusal {
            self.send(io, &refusal).await?;
            return Ok(Flow::Continue);
        }
        if let FaultOutcome::Done(flow) = self.fault(io, Stage::Mail, Some(&from), &[]).await? {
            return Ok(flow);
        }
        self.transaction = Some(Transaction {
            from,
            recipients: Vec::new(),
            open_only: needs_auth,
        });
        self.send(io, &reply(250, "2.1.0 Ok")).await?;
        Ok(Flow::Continue)
    }

    fn check_mail_params(&self, params: &[Param]) -> Option<Reply> {
        if !self.extended && !params.is_empty() {
            return Some(reply(555, "5.5.4 Parameters need EHLO"));
        }
        for param in params {
            let value = param.value.as_deref();
            match (param.keyword.as_str(), value) {
                ("SIZE", Some(size)) => match size.parse::<u64>() {
                    Ok(size) if self.shared.max_size.is_some_and(|max| size > max) => {
                        return Some(reply(552, "5.3.4 Message size exceeds fixed maximum"));
                    }
                    Ok(_) => {}
                    Err(_) => return Some(reply(501, "5.5.4 Bad SIZE value")),
                },
                ("BODY", Some(body))
                    if body.eq_ignore_ascii_case("7BIT")
                        || body.eq_ignore_ascii_case("8BITMIME") => {}
                ("SMTPUTF8", None) | ("AUTH", Some(_)) => {}
                _ => {
                    return Some(reply(
                        555,
                        format!("5.5.4 Unsupported parameter {}", param.keyword),
                    ));
                }
            }
        }
        None
    }

    /// RCPT TO (RFC 5321 §4.1.1.3).
    async fn rcpt<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io<S>,
        to: String,
        params: Vec<Param>,
    ) -> std::io::Result<Flow> {
        let refusal = match &self.transaction {
            None => Some(reply(503, "5.5.1 Need MAIL command first")),
            Some(_) if !params.is_empty() => Some(reply(
                555,
                format!("5.5.4 Unsupported parameter {}", params[0].keyword),
            )),
            Some(t) if t.recipients.len() >= self.shared.max_recipients => {
                Some(reply(452, "4.5.3 Too many recipients"))
            }
            // Closed relay: without AUTH, only the sink's open recipients.
            Some(t) if t.open_only && !self.shared.sink.open_recipient(&to) => {
                Some(reply(530, "5.7.0 Authentication required"))
            }
            Some(_) => self.shared.sink.check_recipient(&to).err(),
        };
        if let Some(refusal) = refusal {
            self.send(io, &refusal).await?;
            return Ok(Flow::Continue);
        }
        let (sender, _) = self.transaction_parts();
        let target = [to];
        if let FaultOutcome::Done(flow) = self
            .fault(io, Stage::Rcpt, sender.as_deref(), &target)
            .await?
        {
            return Ok(flow);
        }
        let [to] = target;
        if let Some(transaction) = &mut self.transaction {
            transaction.recipients.push(to);
        }
        self.send(io, &reply(250, "2.1.5 Ok")).await?;
        Ok(Flow::Continue)
    }
}
