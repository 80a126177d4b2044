//! The session's DATA command (RFC 5321 §4.1.1.4): the text, its refusals, the sink's verdict.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::{FaultOutcome, Flow, Io, Session, reply};
use crate::server::fault::Stage;
use crate::server::lines::{Data, DataObserver, DataProblem, read_data};
use crate::server::sink::ReceivedEnvelope;

/// Ends the text after this many octets, for the fault injector's mid-DATA drop.
struct DropAfter(Option<u64>);

impl DataObserver for DropAfter {
    fn keep_going(&mut self, received: u64) -> bool {
        self.0.is_none_or(|limit| received < limit)
    }
}

impl Session<'_> {
    /// DATA (RFC 5321 §4.1.1.4): 354, the text, then the sink's verdict.
    pub(super) async fn data<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        io: &mut Io<S>,
    ) -> std::io::Result<Flow> {
        let (sender, recipients) = self.transaction_parts();
        let refusal = match &sender {
            None => Some(reply(503, "5.5.1 Need MAIL command first")),
            Some(_) if recipients.is_empty() => Some(reply(554, "5.5.1 No valid recipients")),
            Some(_) => None,
        };
        if let Some(refusal) = refusal {
            self.send(io, &refusal).await?;
            return Ok(Flow::Continue);
        }
        let mut observer = DropAfter(None);
        match self
            .fault(io, Stage::Data, sender.as_deref(), &recipients)
            .await?
        {
            FaultOutcome::Done(flow) => {
                self.transaction = None;
                return Ok(flow);
            }
            FaultOutcome::DropAfter(n) => observer.0 = Some(n),
            FaultOutcome::Proceed => {}
        }
        self.send(io, &reply(354, "End data with <CR><LF>.<CR><LF>"))
            .await?;
        io.flush().await?;
        let max = self.shared.max_size.unwrap_or(u64::MAX);
        let timeout = self.shared.command_timeout;
        let data = read_data(io, max, timeout, &mut observer).await?;
        self.transaction = None;
        let text = match data {
            Data::Eof => return Ok(Flow::Close),
            Data::Refused(DataProblem::TooBig { .. }) => {
                self.send(io, &reply(552, "5.3.4 Message size exceeds fixed maximum"))
                    .await?;
                return Ok(Flow::Continue);
            }
            Data::Refused(DataProblem::LineTooLong) => {
                self.send(io, &reply(500, "5.5.2 Line too long")).await?;
                return Ok(Flow::Continue);
            }
            Data::Refused(DataProblem::BareNewline) => {
                // Whatever followed the `.` that ended the text was never read and is
                // dropped with the connection: no smuggled command is ever acted on.
                tracing::warn!(peer = %self.peer, "bare LF or CR in message text, closing");
                let text = format!("5.5.2 {} Error: bare <LF> received", self.shared.hostname);
                self.send(io, &reply(521, text)).await?;
                return Ok(Flow::Close);
            }
            Data::Complete(text) => text,
        };
        if let FaultOutcome::Done(flow) = self
            .fault(io, Stage::EndOfData, sender.as_deref(), &recipients)
            .await?
        {
            return Ok(flow);
        }
        let envelope = ReceivedEnvelope {
            mail_from: sender.unwrap_or_default(),
            rcpt_to: recipients,
            helo: self.helo.clone().unwrap_or_default(),
            peer: self.peer,
            authenticated: self.authenticated.clone(),
            tls: self.tls,
            connection: self.id,
        };
        match self.shared.sink.deliver(envelope, text).await {
            Ok(id) => {
                self.shared.counters.transaction_done(self.id);
                self.commands = 0;
                let text = match id {
                    Some(id) => format!("2.0.0 Ok: queued as {id}"),
                    None => "2.0.0 Ok: queued".to_string(),
                };
                self.send(io, &reply(250, text)).await?;
            }
            Err(refusal) => self.send(io, &refusal).await?,
        }
        Ok(Flow::Continue)
    }
}
