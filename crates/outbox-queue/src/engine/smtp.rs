//! The engine's real transport: SMTP through `outbox-smtp` — to a relay (the message's own
//! or the configured one), to a program, or straight to a domain's MX hosts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use outbox_smtp::direct::{DirectDelivery, DirectError};
use outbox_smtp::mta_sts::{MtaSts, MtaStsSettings};
use outbox_smtp::mx::{DnsMxResolver, MxError, MxResolver, ResolverSettings};
use outbox_smtp::{
    BoxedStream, ClientConfig, ClientError, ProgramSpec, Reply, ServerSpec, SmtpClient, program,
};

use super::transport::{
    BoxFuture, Connection, ErrorStage, ReplyText, Route, TransactionReport, Transport,
    TransportError, redact,
};

/// What the SMTP transport needs: client settings, the configured relay, the MX port and
/// the resolver.
#[derive(Clone)]
#[non_exhaustive]
pub struct SmtpTransportConfig {
    /// EHLO name, timeouts, trust anchors.
    pub client: ClientConfig,
    /// `[delivery] relay`: every recipient without a per-message relay goes through it.
    pub relay: Option<ServerSpec>,
    /// `[delivery] mx_port`: the port of MX hosts, implicit MX included.
    pub mx_port: u16,
    /// Where MX lookups go; `None` builds a DNS resolver from `nameservers`.
    pub resolver: Option<Arc<dyn MxResolver>>,
    /// `[dns] nameservers`; empty means the system resolver.
    pub nameservers: Vec<SocketAddr>,
    /// `[mta_sts]`: honour recipient domains' MTA-STS policies on MX routes; `None`: off.
    pub mta_sts: Option<MtaStsSettings>,
}

impl Default for SmtpTransportConfig {
    fn default() -> Self {
        SmtpTransportConfig {
            client: ClientConfig::default(),
            relay: None,
            mx_port: 25,
            resolver: None,
            nameservers: Vec::new(),
            mta_sts: None,
        }
    }
}

/// Delivers over SMTP (or to a program), as the route says.
pub struct SmtpTransport {
    client: ClientConfig,
    relay: Option<ServerSpec>,
    resolver: Arc<dyn MxResolver>,
    direct: DirectDelivery,
}

/// Why the SMTP transport could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportSetupError {
    /// The DNS resolver could not be set up.
    #[error(transparent)]
    Resolver(#[from] MxError),
    /// `[tls] ca_file` cannot be used (MTA-STS policy fetches trust it).
    #[error(transparent)]
    Tls(#[from] outbox_smtp::TlsConfigError),
}

impl SmtpTransport {
    /// Builds the transport; fails only when the DNS resolver cannot be set up or, with
    /// MTA-STS on, the CA file cannot be read.
    pub fn new(config: SmtpTransportConfig) -> Result<Self, TransportSetupError> {
        let resolver = match config.resolver {
            Some(resolver) => resolver,
            None => {
                let mut settings = ResolverSettings::default();
                settings.nameservers = config.nameservers;
                Arc::new(DnsMxResolver::new(&settings)?)
            }
        };
        let mut direct = DirectDelivery::new(config.mx_port, config.client.clone());
        if let Some(settings) = config.mta_sts {
            direct = direct.with_mta_sts(Arc::new(MtaSts::new(
                resolver.clone(),
                &config.client.tls,
                settings,
            )?));
        }
        Ok(SmtpTransport {
            client: config.client,
            relay: config.relay,
            resolver,
            direct,
        })
    }

    /// True when a relay is configured: MX routes then go through it.
    pub fn relay_configured(&self) -> bool {
        self.relay.is_some()
    }

    async fn connect_spec(&self, spec: &ServerSpec) -> Result<Box<dyn Connection>, TransportError> {
        match spec {
            ServerSpec::Smtp(smtp) => {
                let host = format!("{}:{}", smtp.host, smtp.port);
                let client = SmtpClient::connect_with(smtp, &self.client)
                    .await
                    .map_err(|err| client_error(&err, true))?;
                Ok(Box::new(SmtpConnection { client, host }))
            }
            ServerSpec::Program(program) => Ok(Box::new(ProgramConnection {
                spec: program.clone(),
                timeout: self.client.timeouts.data_term,
            })),
        }
    }

    /// Opens a session with the first of the domain's MX hosts that answers
    /// (`outbox_smtp::direct`: hosts in MX order, each host's addresses in order).
    async fn connect_mx(&self, domain: &str) -> Result<Box<dyn Connection>, TransportError> {
        let session = self
            .direct
            .connect(&*self.resolver, domain)
            .await
            .map_err(|err| {
                let stage = match &err {
                    // What DNS says about the recipients' domain: it has no mail.
                    DirectError::Mx(mx) if mx.is_permanent() => ErrorStage::Destination,
                    _ => ErrorStage::Connect,
                };
                TransportError::new(stage, err.to_string(), err.is_permanent())
                    .with_reply(err.reply().map(reply_text))
            })?;
        let host = format!(
            "{}[{}]:{}",
            session.host.host,
            session.addr.ip(),
            self.direct.port
        );
        Ok(Box::new(SmtpConnection {
            client: session.client,
            host,
        }))
    }
}

impl Transport for SmtpTransport {
    fn mx_hosts<'a>(&'a self, route: &'a Route) -> BoxFuture<'a, Option<Vec<String>>> {
        Box::pin(async move {
            let Route::Mx(domain) = route else {
                return None;
            };
            let hosts = self.resolver.mx_hosts(domain).await.ok()?;
            Some(hosts.into_iter().map(|host| host.host).collect())
        })
    }

    fn connect<'a>(
        &'a self,
        route: &'a Route,
    ) -> BoxFuture<'a, Result<Box<dyn Connection>, TransportError>> {
        Box::pin(async move {
            match route {
                Route::Relay(text) => {
                    let spec = ServerSpec::parse(text).map_err(|err| {
                        TransportError::new(
                            ErrorStage::Local,
                            format!("relay {:?}: {err}", redact(text)),
                            true,
                        )
                    })?;
                    self.connect_spec(&spec).await
                }
                Route::ConfiguredRelay => match &self.relay {
                    Some(spec) => self.connect_spec(spec).await,
                    None => Err(TransportError::new(
                        ErrorStage::Local,
                        "no relay is configured",
                        false,
                    )),
                },
                Route::Mx(domain) => self.connect_mx(domain).await,
            }
        })
    }
}

/// A reply as the queue stores it.
fn reply_text(reply: &Reply) -> ReplyText {
    ReplyText {
        code: reply.code,
        text: reply.to_string(),
    }
}

/// A client error as the engine sees it. Errors before or outside a transaction leave the
/// connection unusable, except a refused MAIL FROM and a message too big for the server; a
/// `421` to any command is the server closing the session.
fn client_error(err: &ClientError, connecting: bool) -> TransportError {
    let usable = !connecting
        && match err {
            ClientError::Rejected { reply, .. } => reply.code != 421,
            ClientError::MessageTooBig { .. } => true,
            _ => false,
        };
    let stage = if connecting {
        connect_stage(err)
    } else if after_data(err) {
        ErrorStage::AfterData
    } else {
        ErrorStage::Transaction
    };
    TransportError {
        message: err.to_string(),
        permanent: err.is_permanent(),
        connection_lost: !usable,
        stage,
        reply: err.reply().map(reply_text),
    }
}

/// Connection setup errors that are our own configuration, not the server's answer.
fn connect_stage(err: &ClientError) -> ErrorStage {
    match err {
        ClientError::TlsConfig(_)
        | ClientError::AuthWithoutTls { .. }
        | ClientError::AuthEncoding(_)
        | ClientError::InvalidInput { .. } => ErrorStage::Local,
        _ => ErrorStage::Connect,
    }
}

/// True when the error came while waiting for the reply to the final dot: the whole
/// message went out, and the server may have taken it.
fn after_data(err: &ClientError) -> bool {
    match err {
        ClientError::Closed { command }
        | ClientError::Io { command, .. }
        | ClientError::Timeout { command, .. }
        | ClientError::BadReply { command, .. } => command == END_OF_DATA,
        _ => false,
    }
}

/// The command name `outbox_smtp` gives the reply to the final dot.
const END_OF_DATA: &str = "end of DATA";

struct SmtpConnection {
    client: SmtpClient<BoxedStream>,
    host: String,
}

impl Connection for SmtpConnection {
    fn host(&self) -> String {
        self.host.clone()
    }

    fn send<'a>(
        &'a mut self,
        from: &'a str,
        recipients: &'a [&'a str],
        data: &'a [u8],
    ) -> BoxFuture<'a, Result<TransactionReport, TransportError>> {
        Box::pin(async move {
            let delivery = self
                .client
                .send_to(from, recipients, data)
                .await
                .map_err(|err| client_error(&err, false))?;
            Ok(TransactionReport {
                recipients: delivery
                    .recipients
                    .iter()
                    .map(|r| reply_text(r.outcome.reply()))
                    .collect(),
                data: delivery.data.as_ref().map(reply_text),
            })
        })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let _ = self.client.quit().await;
        })
    }
}

/// `program:` routes: each transaction runs the program once.
struct ProgramConnection {
    spec: ProgramSpec,
    timeout: Duration,
}

impl Connection for ProgramConnection {
    fn host(&self) -> String {
        format!("program:{}", self.spec.program)
    }

    fn send<'a>(
        &'a mut self,
        from: &'a str,
        recipients: &'a [&'a str],
        data: &'a [u8],
    ) -> BoxFuture<'a, Result<TransactionReport, TransportError>> {
        Box::pin(async move {
            program::send_with_timeout(&self.spec, from, recipients, data, Some(self.timeout))
                .await
                .map_err(|err| TransportError {
                    message: err.to_string(),
                    permanent: err.is_permanent(),
                    connection_lost: false,
                    stage: ErrorStage::Transaction,
                    reply: None,
                })?;
            let accepted = ReplyText {
                code: 250,
                text: format!("250 accepted by {}", self.spec.program),
            };
            Ok(TransactionReport {
                recipients: vec![accepted.clone(); recipients.len()],
                data: Some(accepted),
            })
        })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}
