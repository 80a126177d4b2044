//! One mail transaction (RFC 5321 §3.3): MAIL FROM, RCPT TO per recipient, DATA; and RSET,
//! QUIT.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::{RcptOutcome, RecipientReport, SendReport, SmtpClient};
use crate::dot;
use crate::error::ClientError;
use crate::reply::Reply;

/// Message data is written in blocks of this size, each within the data-block timeout
/// (RFC 5321 §4.5.3.2.5).
const DATA_BLOCK: usize = 64 * 1024;

/// Who a message is from and to, as SMTP sees it (RFC 5321 §2.3.1): the reverse-path for
/// `MAIL FROM` and the forward-paths for `RCPT TO`, independent of the message's `From:` and
/// `To:` headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    from: String,
    to: Vec<String>,
}

impl Envelope {
    /// An envelope from `from` (empty for the null sender of bounces) to `to`.
    pub fn new<T: Into<String>>(from: impl Into<String>, to: impl IntoIterator<Item = T>) -> Self {
        Envelope {
            from: from.into(),
            to: to.into_iter().map(Into::into).collect(),
        }
    }

    /// The reverse-path (`MAIL FROM`).
    pub fn from(&self) -> &str {
        &self.from
    }

    /// The forward-paths (`RCPT TO`), in order.
    pub fn to(&self) -> &[String] {
        &self.to
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> SmtpClient<S> {
    /// Sends `message` (the RFC 5322 bytes, headers and body) to the envelope's recipients and
    /// reports each recipient's outcome; [`SmtpClient::send_to`] with the envelope's parts.
    pub async fn send(
        &mut self,
        envelope: &Envelope,
        message: impl AsRef<[u8]>,
    ) -> Result<SendReport, ClientError> {
        self.send_to(&envelope.from, &envelope.to, message.as_ref())
            .await
    }

    /// Sends one message to `recipients` and reports each recipient's outcome.
    ///
    /// - MAIL FROM carries `SIZE=` (RFC 1870) when offered, `BODY=8BITMIME` (RFC 6152) when
    ///   offered and the message has 8-bit bytes, `SMTPUTF8` (RFC 6531) when an address
    ///   needs it. A message over the server's SIZE limit is refused before MAIL.
    /// - With PIPELINING (RFC 2920) MAIL and every RCPT go out in one write; DATA waits for
    ///   their replies so that DATA is never sent when every recipient was rejected — then
    ///   the transaction is reset with RSET and [`SendReport::data`] is `None`.
    /// - A rejected RCPT rejects that recipient only.
    /// - The message is dot-stuffed with every line end made CRLF ([`dot::encode_data`]).
    ///
    /// A rejected MAIL FROM is an error ([`ClientError::Rejected`]); a refused DATA or a
    /// non-2xx end-of-data reply is reported in [`SendReport::data`]. After `send` returns
    /// `Ok`, the session is ready for the next message.
    pub async fn send_to<R: AsRef<str>>(
        &mut self,
        from: &str,
        recipients: &[R],
        message: &[u8],
    ) -> Result<SendReport, ClientError> {
        if recipients.is_empty() {
            return Err(ClientError::NoRecipients);
        }
        check_address(from, "sender address")?;
        for rcpt in recipients {
            check_address(rcpt.as_ref(), "recipient address")?;
        }
        let needs_utf8 = std::iter::once(from)
            .chain(recipients.iter().map(AsRef::as_ref))
            .find(|address| !address.is_ascii());
        if let Some(address) = needs_utf8
            && !self.capabilities.smtputf8
        {
            return Err(ClientError::Utf8NotSupported {
                address: address.to_string(),
            });
        }

        let mut data = Vec::new();
        dot::encode_data(message, &mut data);
        let size = (data.len() - dot::END_OF_DATA.len()) as u64;
        if !self.capabilities.accepts_size(size) {
            return Err(ClientError::MessageTooBig {
                size,
                limit: self.capabilities.size.unwrap_or(0),
            });
        }

        let mut mail = format!("MAIL FROM:<{from}>");
        if self.capabilities.size.is_some() {
            mail.push_str(&format!(" SIZE={size}"));
        }
        if self.capabilities.eight_bit_mime && dot::is_8bit(message) {
            mail.push_str(" BODY=8BITMIME");
        }
        if needs_utf8.is_some() {
            mail.push_str(" SMTPUTF8");
        }

        let timeouts = self.config.timeouts;
        let mut reports = Vec::with_capacity(recipients.len());
        if self.capabilities.pipelining {
            self.queue_line(&mail, "sender address")?;
            for rcpt in recipients {
                self.queue_line(&format!("RCPT TO:<{}>", rcpt.as_ref()), "recipient address")?;
            }
            self.flush("MAIL FROM", timeouts.mail_from).await?;
            let mail_reply = self.read_reply_for("MAIL FROM", timeouts.mail_from).await?;
            let mail_reply = not_closing("MAIL FROM", mail_reply)?;
            // Every RCPT reply must be read even after a refused MAIL, to stay in step.
            for rcpt in recipients {
                let reply = self.read_reply_for("RCPT TO", timeouts.rcpt_to).await?;
                reports.push(report(rcpt.as_ref(), not_closing("RCPT TO", reply)?));
            }
            if !mail_reply.is_success() {
                return Err(ClientError::Rejected {
                    command: "MAIL FROM".to_string(),
                    reply: mail_reply,
                });
            }
        } else {
            self.queue_line(&mail, "sender address")?;
            self.flush("MAIL FROM", timeouts.mail_from).await?;
            let mail_reply = self.read_reply_for("MAIL FROM", timeouts.mail_from).await?;
            let mail_reply = not_closing("MAIL FROM", mail_reply)?;
            if !mail_reply.is_success() {
                return Err(ClientError::Rejected {
                    command: "MAIL FROM".to_string(),
                    reply: mail_reply,
                });
            }
            for rcpt in recipients {
                self.queue_line(&format!("RCPT TO:<{}>", rcpt.as_ref()), "recipient address")?;
                self.flush("RCPT TO", timeouts.rcpt_to).await?;
                let reply = self.read_reply_for("RCPT TO", timeouts.rcpt_to).await?;
                reports.push(report(rcpt.as_ref(), not_closing("RCPT TO", reply)?));
            }
        }

        if !reports.iter().any(|r| r.outcome.is_accepted()) {
            self.reset().await?;
            return Ok(SendReport {
                recipients: reports,
                data: None,
            });
        }

        self.queue_line("DATA", "command")?;
        self.flush("DATA", timeouts.data_init).await?;
        let reply = self.read_reply_for("DATA", timeouts.data_init).await?;
        let reply = not_closing("DATA", reply)?;
        if reply.code != 354 {
            // The recipients are still part of an open transaction: clear it.
            self.reset().await?;
            return Ok(SendReport {
                recipients: reports,
                data: Some(reply),
            });
        }
        self.write_data(&data).await?;
        let reply = self
            .read_reply_for("end of DATA", timeouts.data_term)
            .await?;
        Ok(SendReport {
            recipients: reports,
            data: Some(reply),
        })
    }

    /// Writes the encoded message in blocks, each within the data-block timeout.
    async fn write_data(&mut self, data: &[u8]) -> Result<(), ClientError> {
        let limit = self.config.timeouts.data_block;
        for block in data.chunks(DATA_BLOCK) {
            match tokio::time::timeout(limit, self.stream.write_all(block)).await {
                Ok(Ok(())) => {}
                Ok(Err(source)) => return Err(super::io_error("DATA", source)),
                Err(_) => {
                    return Err(ClientError::Timeout {
                        command: "DATA (message block)".to_string(),
                        after: limit,
                    });
                }
            }
        }
        self.flush("DATA", limit).await
    }

    /// RSET (RFC 5321 §4.1.1.5): abandons the current transaction; must get 250.
    pub async fn reset(&mut self) -> Result<Reply, ClientError> {
        let timeout = self.config.timeouts.rset;
        self.queue_line("RSET", "command")?;
        self.flush("RSET", timeout).await?;
        let reply = self.read_reply_for("RSET", timeout).await?;
        if !reply.is_success() {
            return Err(ClientError::Rejected {
                command: "RSET".to_string(),
                reply,
            });
        }
        Ok(reply)
    }

    /// QUIT (RFC 5321 §4.1.1.10) and close the stream. A server that hangs up without its 221
    /// is not an error: the session is over either way.
    pub async fn quit(mut self) -> Result<Option<Reply>, ClientError> {
        let timeout = self.config.timeouts.quit;
        self.queue_line("QUIT", "command")?;
        self.flush("QUIT", timeout).await?;
        let reply = match self.read_reply_for("QUIT", timeout).await {
            Ok(reply) => Some(reply),
            Err(ClientError::Closed { .. }) => None,
            Err(err) => return Err(err),
        };
        // The server closes after 221; a failed shutdown changes nothing for us.
        let _ = tokio::time::timeout(timeout, self.stream.shutdown()).await;
        Ok(reply)
    }
}

/// A `421` is the server closing the session (RFC 5321 §3.8), whatever command it answers:
/// the transaction ends there with that reply, instead of with the lost connection the next
/// read would find (a pipelined MAIL refused with 421 is followed by a close, not by the
/// RCPT replies).
fn not_closing(command: &str, reply: Reply) -> Result<Reply, ClientError> {
    if reply.code == 421 {
        return Err(ClientError::Rejected {
            command: command.to_string(),
            reply,
        });
    }
    Ok(reply)
}

fn report(address: &str, reply: Reply) -> RecipientReport {
    let outcome = if reply.is_success() {
        RcptOutcome::Accepted(reply)
    } else {
        RcptOutcome::Rejected(reply)
    };
    RecipientReport {
        address: address.to_string(),
        outcome,
    }
}

/// An envelope address must fit between `<` and `>` on one command line: no CR, LF, NUL,
/// angle brackets or spaces (RFC 5321 §4.1.2 has no room for them outside quotes, and a
/// quoted local part with a space is not worth the smuggling risk). The empty reverse path
/// `<>` (bounces) is allowed for the sender.
fn check_address(address: &str, what: &'static str) -> Result<(), ClientError> {
    let bad = address
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>')
        || (address.is_empty() && what != "sender address");
    if bad {
        return Err(ClientError::InvalidInput {
            what,
            value: address.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_that_cannot_go_on_the_wire() {
        assert!(check_address("a@b.test", "recipient address").is_ok());
        assert!(check_address("", "sender address").is_ok());
        for bad in ["", "a@b>\r\nRSET", "a b@c", "<a@b>", "a@b\0"] {
            assert!(check_address(bad, "recipient address").is_err(), "{bad:?}");
        }
    }
}
