//! `outbox.toml`: the configuration file, and `OUTBOX_<SECTION>_<KEY>` environment overrides.
//!
//! Every key is listed in `docs/configuration.md`. Unknown keys are errors, in the file and in
//! the environment, so a typo is never silently ignored. With no file at all, Outbox uses
//! `sqlite://outbox.db` in the working directory and delivers by direct MX.

pub mod dkim;
mod env;
mod secrets;
pub mod shaping;
pub mod units;
pub mod webhooks;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use outbox_smtp::timeout_defaults as timeouts;
use serde::Deserialize;

use units::{ByteSize, HumanDuration};

/// The default database: an SQLite file in the working directory.
pub const DEFAULT_DATABASE: &str = "sqlite://outbox.db";

/// The whole configuration, defaults filled.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `sqlite://PATH` or `postgres://...`.
    pub database: String,
    pub delivery: DeliveryConfig,
    pub dns: DnsConfig,
    pub tls: TlsConfig,
    pub http: HttpConfig,
    pub smtp_listener: SmtpListenerConfig,
    pub sendmail: SendmailConfig,
    /// `[[shaping]]`: per-destination limits, first match wins.
    pub shaping: Vec<shaping::ShapingEntry>,
    pub mta_sts: MtaStsConfig,
    /// `[[dkim]]`: signing domains, selectors and keys.
    pub dkim: Vec<dkim::DkimEntry>,
    pub unsubscribe: UnsubscribeConfig,
    pub bounces: BouncesConfig,
    pub complaints: ComplaintsConfig,
    /// `[[webhooks]]`: where events are sent.
    pub webhooks: Vec<webhooks::WebhookEntry>,
    /// `[events]`: the event log's retention and the webhook sender's settings.
    pub events: webhooks::EventsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database: DEFAULT_DATABASE.to_owned(),
            delivery: DeliveryConfig::default(),
            dns: DnsConfig::default(),
            tls: TlsConfig::default(),
            http: HttpConfig::default(),
            smtp_listener: SmtpListenerConfig::default(),
            sendmail: SendmailConfig::default(),
            shaping: Vec::new(),
            mta_sts: MtaStsConfig::default(),
            dkim: Vec::new(),
            unsubscribe: UnsubscribeConfig::default(),
            bounces: BouncesConfig::default(),
            complaints: ComplaintsConfig::default(),
            webhooks: Vec::new(),
            events: webhooks::EventsConfig::default(),
        }
    }
}

/// `[bounces]`: VERP return paths and the reports that come back to them (issue 12).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BouncesConfig {
    /// The bounce domain: envelope senders become `bounces+TOKEN@DOMAIN`, and the SMTP
    /// listener accepts mail for this domain from anyone, without AUTH. Its MX must point
    /// at the listener.
    pub domain: Option<String>,
    /// The HMAC key of the VERP tokens (at least 16 characters); required with `domain`.
    /// Changing it makes the tokens of mail already sent unreadable: their bounces are
    /// kept as unmatched.
    pub secret: Option<String>,
    /// Largest report the listener takes for the bounce domain (default "1MB"; at most
    /// `delivery.max_message_size`, which the listener enforces first): a bounce carries
    /// the returned headers, or the message.
    pub max_report_size: Option<ByteSize>,
}

impl BouncesConfig {
    /// The VERP signer, when a bounce domain is configured.
    pub fn verp(&self) -> Option<outbox_queue::Verp> {
        let domain = self.domain.as_deref()?;
        let secret = self.secret.as_deref()?;
        Some(outbox_queue::Verp::new(domain, secret.as_bytes()))
    }
}

/// `[complaints]`: where feedback loops send their reports, when not to the bounce domain.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComplaintsConfig {
    /// An address the SMTP listener accepts complaint reports (RFC 5965) for, from
    /// anyone, without AUTH, like the bounce domain.
    pub address: Option<String>,
}

/// `[delivery]`: how the background sender delivers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// A server spec every message goes through; absent: direct MX delivery.
    pub relay: Option<String>,
    /// Outgoing SMTP connections open at once (the seed's five), in total; also each
    /// destination's limit unless a `[[shaping]]` entry says otherwise.
    pub max_connections: usize,
    /// Transactions on one connection before it is closed (the seed's 100).
    pub messages_per_connection: usize,
    /// Messages per unit of time to one destination (`"20/s"`); absent: no limit.
    pub max_message_rate: Option<shaping::RateSetting>,
    /// Recipients in one SMTP transaction; more go in the next one.
    pub max_recipients_per_transaction: usize,
    /// Attempts before a recipient fails ("cancelled" in the seed's words).
    pub max_attempts: u32,
    /// Waits between attempts; the last one repeats.
    pub retry_backoff: Vec<HumanDuration>,
    /// Largest message the queue accepts (the seed's 8 MB).
    pub max_message_size: ByteSize,
    /// The name given in EHLO.
    pub helo_name: String,
    /// TCP connect, and the handshake of implicit TLS.
    pub connect_timeout: HumanDuration,
    /// The 220 greeting (RFC 5321 §4.5.3.2.1).
    pub greeting_timeout: HumanDuration,
    /// The reply to MAIL FROM (§4.5.3.2.2).
    pub mail_timeout: HumanDuration,
    /// The reply to each RCPT TO (§4.5.3.2.3).
    pub rcpt_timeout: HumanDuration,
    /// The 354 after DATA (§4.5.3.2.4).
    pub data_timeout: HumanDuration,
    /// Each block of message text written (§4.5.3.2.5).
    pub data_block_timeout: HumanDuration,
    /// The reply to the final dot (§4.5.3.2.6).
    pub data_end_timeout: HumanDuration,
    /// Every other step: EHLO, STARTTLS, AUTH, RSET, QUIT, raw commands.
    pub command_timeout: HumanDuration,
    /// The port used for MX hosts, implicit MX (A/AAAA) included.
    pub mx_port: u16,
    /// How long a worker holds claimed recipients before they are due again.
    pub lease: HumanDuration,
    /// May the engine run a `program:` relay stored on a message? Whoever can write the
    /// queue database can store one, and the engine runs it as the service user; the
    /// configured `relay` is the operator's and always runs.
    pub allow_program_relay: bool,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            relay: None,
            max_connections: 5,
            messages_per_connection: 100,
            max_message_rate: None,
            max_recipients_per_transaction: 100,
            max_attempts: 10,
            retry_backoff: ["1m", "5m", "15m", "1h", "4h"]
                .iter()
                .map(|text| HumanDuration(units::parse_duration(text).expect("valid default")))
                .collect(),
            max_message_size: ByteSize(8_000_000),
            helo_name: default_helo_name(),
            connect_timeout: HumanDuration(timeouts::CONNECT),
            greeting_timeout: HumanDuration(timeouts::GREETING),
            mail_timeout: HumanDuration(timeouts::MAIL_FROM),
            rcpt_timeout: HumanDuration(timeouts::RCPT_TO),
            data_timeout: HumanDuration(timeouts::DATA_INIT),
            data_block_timeout: HumanDuration(timeouts::DATA_BLOCK),
            data_end_timeout: HumanDuration(timeouts::DATA_TERM),
            command_timeout: HumanDuration(timeouts::COMMAND),
            mx_port: 25,
            lease: HumanDuration(Duration::from_secs(10)),
            allow_program_relay: false,
        }
    }
}

impl DeliveryConfig {
    /// The backoff list as plain durations.
    pub fn retry_backoff(&self) -> Vec<Duration> {
        self.retry_backoff.iter().map(|d| d.0).collect()
    }

    /// The SMTP client's timeouts: RFC 5321 §4.5.3.2's named steps from their keys, every
    /// other step from `command_timeout`.
    pub fn timeouts(&self) -> outbox_smtp::Timeouts {
        let mut timeouts = outbox_smtp::Timeouts::default().with_command(self.command_timeout.0);
        timeouts.connect = self.connect_timeout.0;
        timeouts.greeting = self.greeting_timeout.0;
        timeouts.mail_from = self.mail_timeout.0;
        timeouts.rcpt_to = self.rcpt_timeout.0;
        timeouts.data_init = self.data_timeout.0;
        timeouts.data_block = self.data_block_timeout.0;
        timeouts.data_term = self.data_end_timeout.0;
        timeouts
    }

    /// Each timeout key with its value, for the "more than 0s" check.
    fn timeout_keys(&self) -> [(&'static str, Duration); 8] {
        [
            ("connect_timeout", self.connect_timeout.0),
            ("greeting_timeout", self.greeting_timeout.0),
            ("mail_timeout", self.mail_timeout.0),
            ("rcpt_timeout", self.rcpt_timeout.0),
            ("data_timeout", self.data_timeout.0),
            ("data_block_timeout", self.data_block_timeout.0),
            ("data_end_timeout", self.data_end_timeout.0),
            ("command_timeout", self.command_timeout.0),
        ]
    }
}

/// `[dns]`: where MX lookups go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// `ip:port` of the nameservers to ask; empty: the system resolver.
    pub nameservers: Vec<SocketAddr>,
}

/// `[tls]`: trust for outgoing connections.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// A PEM file of extra trust anchors, beside the built-in web PKI roots.
    pub ca_file: Option<PathBuf>,
}

/// `[unsubscribe]`: one-click unsubscribe links (RFC 8058) for messages that ask for them.
/// `base_url` and `secret` go together; without them a message with `list_unsubscribe` is
/// refused when it is queued.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnsubscribeConfig {
    /// Where `serve` is reached from the internet: links are `BASE_URL/u/TOKEN`.
    pub base_url: Option<String>,
    /// The key of the links' signatures (16 octets or more; keep it: changing it breaks
    /// every link already mailed).
    pub secret: Option<String>,
    /// A second `List-Unsubscribe` URI, `mailto:ADDRESS?subject=unsubscribe%20TOKEN`.
    pub mailto: Option<String>,
}

impl UnsubscribeConfig {
    /// The links, when configured; an error names the key at fault (never the secret).
    pub fn links(&self) -> anyhow::Result<Option<Arc<outbox_queue::Unsubscribe>>> {
        match (&self.base_url, &self.secret) {
            (None, None) if self.mailto.is_none() => Ok(None),
            (Some(base_url), Some(secret)) => {
                outbox_queue::Unsubscribe::new(base_url, secret.as_bytes(), self.mailto.as_deref())
                    .map(|links| Some(Arc::new(links)))
                    .map_err(|err| anyhow::anyhow!("configuration: unsubscribe.{err}"))
            }
            _ => bail!(
                "configuration: unsubscribe.base_url and unsubscribe.secret go together (and \
                 unsubscribe.mailto needs both)"
            ),
        }
    }

    /// The links a message with `list_unsubscribe` needs, or the error that refuses it.
    pub fn required(&self) -> anyhow::Result<Arc<outbox_queue::Unsubscribe>> {
        self.links()?.ok_or_else(|| {
            anyhow::anyhow!(
                "list_unsubscribe: set [unsubscribe] base_url and secret in the configuration \
                 to send one-click unsubscribe links"
            )
        })
    }
}

/// `[mta_sts]`: recipient domains' MTA-STS policies (RFC 8461) for direct MX delivery.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MtaStsConfig {
    /// Look up and honour policies.
    pub enabled: bool,
    /// Port of the policy host `mta-sts.DOMAIN` (443; tests change it).
    pub https_port: u16,
    /// The longest one policy fetch may take.
    pub fetch_timeout: HumanDuration,
    /// How long a domain's answer is reused before its TXT record is looked up again.
    pub recheck_interval: HumanDuration,
}

impl Default for MtaStsConfig {
    fn default() -> Self {
        let settings = outbox_smtp::mta_sts::MtaStsSettings::default();
        MtaStsConfig {
            enabled: true,
            https_port: settings.https_port,
            fetch_timeout: HumanDuration(settings.fetch_timeout),
            recheck_interval: HumanDuration(settings.recheck_interval),
        }
    }
}

impl MtaStsConfig {
    /// The MTA-STS settings, when enabled.
    pub fn settings(&self) -> Option<outbox_smtp::mta_sts::MtaStsSettings> {
        let mut settings = outbox_smtp::mta_sts::MtaStsSettings::default();
        settings.https_port = self.https_port;
        settings.fetch_timeout = self.fetch_timeout.0;
        settings.recheck_interval = self.recheck_interval.0;
        self.enabled.then_some(settings)
    }
}

/// `[http]`: the API and admin page of `outbox serve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Bearer tokens that may use the API and log in to the admin page.
    pub tokens: Vec<String>,
    /// Directory that `path` attachments may come from over HTTP; absent: refused.
    pub attachment_dir: Option<PathBuf>,
    /// May a message posted over HTTP name its own `relay` (DESIGN §10)? `program:` relays
    /// are refused from the network whatever this says.
    pub allow_relay: bool,
    /// How long a client has to send a request's headers, counted from when the server
    /// starts waiting for them: a new connection, or the end of the previous answer on a
    /// kept-alive one (so it is also the keep-alive idle timeout).
    pub header_timeout: HumanDuration,
    /// How long a request's body may take to arrive once its headers are in.
    pub body_timeout: HumanDuration,
    /// HTTP connections open at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// HTTP connections open at once from one client address; more are answered 503 and
    /// closed, so one address cannot take every slot of `max_connections`.
    pub max_connections_per_client: usize,
    /// Failed token checks (API, admin login) from one client address within
    /// `auth_failure_window` before that address gets 429 for the rest of the window.
    pub max_auth_failures: u32,
    pub auth_failure_window: HumanDuration,
    /// Networks (CIDR, like `smtp_listener.trusted_networks`) whose clients are never
    /// throttled for failed tokens: a reverse proxy, or 127.0.0.1 when all local apps share
    /// it. Their failures are still logged.
    pub throttle_exempt: Vec<String>,
    /// How far ahead a message posted over HTTP may set `send_at`.
    pub schedule_horizon: HumanDuration,
}

impl HttpConfig {
    /// `throttle_exempt` parsed. An entry that does not parse is left out: loading the
    /// configuration refuses it (see `Config::validate`), so none is left by then.
    pub fn throttle_exempt_networks(&self) -> Vec<outbox_smtp::server::Network> {
        self.throttle_exempt
            .iter()
            .filter_map(|text| text.parse().ok())
            .collect()
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8025)),
            tokens: Vec::new(),
            attachment_dir: None,
            allow_relay: false,
            header_timeout: HumanDuration(Duration::from_secs(30)),
            body_timeout: HumanDuration(Duration::from_secs(60)),
            max_connections: 512,
            // A quarter of max_connections: it takes four addresses to fill the server,
            // yet a busy local host (all its apps share 127.0.0.1) or a reverse proxy keeps
            // 128 requests in flight before it is refused.
            max_connections_per_client: 128,
            max_auth_failures: 10,
            auth_failure_window: HumanDuration(Duration::from_secs(300)),
            throttle_exempt: Vec::new(),
            schedule_horizon: HumanDuration(Duration::from_secs(366 * 24 * 60 * 60)),
        }
    }
}

/// `[smtp_listener]`: the SMTP submission listener of `outbox serve`. The limits are
/// described in docs/configuration.md; each refusal is a `421 4.7.0` and a closed
/// connection, except `max_recipients` (`452` for that recipient).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpListenerConfig {
    /// Absent: no listener.
    pub listen: Option<SocketAddr>,
    /// user -> password; AUTH is required from everyone outside `trusted_networks`.
    pub users: BTreeMap<String, String>,
    /// CIDR blocks whose clients may submit without AUTH (Postfix's mynetworks).
    pub trusted_networks: Vec<String>,
    /// Certificate chain (PEM) for STARTTLS.
    pub cert_file: Option<PathBuf>,
    /// Private key (PEM) for STARTTLS.
    pub key_file: Option<PathBuf>,
    /// Offer AUTH only after STARTTLS.
    pub require_tls: bool,
    /// Connections open at once, from all clients.
    pub max_connections: usize,
    /// Connections open at once from one client IP address (Postfix's anvil).
    pub max_connections_per_client: usize,
    /// Recipients per message; more get `452 4.5.3`.
    pub max_recipients: usize,
    /// How long a connection may wait between commands (and between lines of a message).
    pub idle_timeout: HumanDuration,
    /// Commands on one connection since it opened or last had a message accepted.
    pub max_commands: u32,
    /// Error replies (4xx/5xx) on one connection (Postfix's smtpd_hard_error_limit).
    pub max_errors: u32,
    /// Failed AUTH attempts on one connection.
    pub max_auth_failures: u32,
    /// Failed AUTH attempts from one client address within `auth_failure_window` before
    /// the address is refused for the rest of the window.
    pub max_auth_failures_per_client: u32,
    pub auth_failure_window: HumanDuration,
}

impl Default for SmtpListenerConfig {
    fn default() -> Self {
        SmtpListenerConfig {
            listen: None,
            users: BTreeMap::new(),
            trusted_networks: Vec::new(),
            cert_file: None,
            key_file: None,
            require_tls: false,
            // DESIGN §10.
            max_connections: 200,
            max_connections_per_client: 20,
            max_recipients: 1000,
            idle_timeout: HumanDuration(Duration::from_secs(300)),
            // A transaction of max_recipients recipients needs about that many commands.
            max_commands: 2000,
            // Postfix's smtpd_hard_error_limit.
            max_errors: 20,
            max_auth_failures: 3,
            max_auth_failures_per_client: 10,
            auth_failure_window: HumanDuration(Duration::from_secs(600)),
        }
    }
}

/// `[sendmail]`: the `outbox sendmail` command (DESIGN §10).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SendmailConfig {
    /// Completes addresses without a domain (`root`, `root (Cron Daemon)`), in the envelope
    /// and the address headers, as Postfix's `myorigin` does; also the default sender's
    /// domain. Default: the machine's host name.
    pub domain: String,
}

impl Default for SendmailConfig {
    fn default() -> Self {
        // A host name that is not a valid domain must not make every command refuse to
        // start: fall back to `localhost`, which `[sendmail] domain` can override.
        let host = default_helo_name();
        SendmailConfig {
            domain: if is_domain(&host) {
                host
            } else {
                "localhost".to_owned()
            },
        }
    }
}

impl Config {
    /// `[bounces]` and `[complaints]`: a bounce domain needs a secret, and names a domain.
    fn check_feedback(&self) -> anyhow::Result<()> {
        let bounces = &self.bounces;
        if let Some(domain) = &bounces.domain {
            if !is_domain(domain) {
                bail!(
                    "configuration: bounces.domain must be a domain name, such as bounces.example.com"
                );
            }
            match &bounces.secret {
                None => bail!(
                    "configuration: bounces.secret is required with bounces.domain (the key of the VERP tokens, at least 16 characters)"
                ),
                Some(secret) if secret.len() < 16 => {
                    bail!("configuration: bounces.secret must be at least 16 characters")
                }
                Some(_) => {}
            }
        } else if bounces.secret.is_some() {
            bail!("configuration: bounces.secret is set without bounces.domain");
        }
        if bounces.max_report_size == Some(ByteSize(0)) {
            bail!("configuration: bounces.max_report_size must be more than 0");
        }
        if let Some(address) = &self.complaints.address
            && (outbox_mime::parse_address(address).is_err() || !address.contains('@'))
        {
            bail!("configuration: complaints.address must be an address, such as fbl@example.com");
        }
        Ok(())
    }
}

/// A domain an address can end with (the same rules as any address's domain).
fn is_domain(domain: &str) -> bool {
    !domain.contains('@') && outbox_mime::parse_address(&format!("postmaster@{domain}")).is_ok()
}

/// Where the configuration comes from: `--config`, else `$OUTBOX_CONFIG`, else `./outbox.toml`
/// when it exists, else nothing (defaults).
pub fn config_path(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_owned());
    }
    if let Some(path) = std::env::var_os("OUTBOX_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let local = PathBuf::from("outbox.toml");
    local.exists().then_some(local)
}

/// Loads the configuration: the file (if any), then the environment, then `--db`.
pub fn load(explicit: Option<&Path>, db: Option<&str>) -> anyhow::Result<Config> {
    let mut table = match config_path(explicit) {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            text.parse::<toml::Table>()
                .map_err(|err| anyhow::anyhow!("{}: {}", path.display(), err.message()))?
        }
        None => toml::Table::new(),
    };
    env::apply(&mut table, std::env::vars())?;
    from_table(table, db)
}

/// The configuration from the merged table. Error messages never show a secret: the keys
/// that hold them are shape-checked with messages of their own, and every other message is
/// scrubbed of the table's secrets (serde quotes the values it cannot take).
fn from_table(table: toml::Table, db: Option<&str>) -> anyhow::Result<Config> {
    secrets::check_shapes(&table)?;
    let mut known = secrets::collect(&table);
    let mut config = Config::deserialize(toml::Value::Table(table)).map_err(|err| {
        anyhow::anyhow!("configuration: {}", secrets::scrub(err.message(), &known))
    })?;
    if let Some(db) = db {
        config.database = db.to_owned();
        known.extend(secrets::url_password(db));
    }
    config
        .validate()
        .map_err(|err| anyhow::anyhow!("{}", secrets::scrub(&format!("{err:#}"), &known)))?;
    Ok(config)
}

impl Config {
    /// Checks what serde cannot: ranges and cross-field rules.
    fn validate(&self) -> anyhow::Result<()> {
        let d = &self.delivery;
        if d.max_connections == 0 {
            bail!("configuration: delivery.max_connections must be at least 1");
        }
        if d.messages_per_connection == 0 {
            bail!("configuration: delivery.messages_per_connection must be at least 1");
        }
        if self.mta_sts.https_port == 0 || self.mta_sts.fetch_timeout.0.is_zero() {
            bail!(
                "configuration: mta_sts.https_port and mta_sts.fetch_timeout must be more than 0"
            );
        }
        if d.max_recipients_per_transaction == 0 {
            bail!("configuration: delivery.max_recipients_per_transaction must be at least 1");
        }
        shaping::rules(&self.shaping)?;
        dkim::check(&self.dkim)?;
        self.unsubscribe.links()?;
        self.check_feedback()?;
        webhooks::webhooks(&self.webhooks)?;
        self.events.check()?;
        if d.max_attempts == 0 {
            bail!("configuration: delivery.max_attempts must be at least 1");
        }
        if d.retry_backoff.is_empty() {
            bail!("configuration: delivery.retry_backoff needs at least one duration");
        }
        for (key, value) in d.timeout_keys() {
            if value.is_zero() {
                bail!("configuration: delivery.{key} must be more than 0s");
            }
        }
        if d.lease.0 < Duration::from_secs(2) {
            bail!("configuration: delivery.lease must be at least 2s");
        }
        if d.helo_name.trim().is_empty() || d.helo_name.contains(char::is_whitespace) {
            bail!("configuration: delivery.helo_name must be one host name");
        }
        let domain = &self.sendmail.domain;
        if !is_domain(domain) {
            bail!("configuration: sendmail.domain must be a domain name, such as host.example.com");
        }
        if let Some(relay) = &d.relay {
            // Checked here, not at the first delivery; the spec is shown with its password
            // as *** (the parse error itself never quotes the user information).
            outbox_smtp::ServerSpec::parse(relay).with_context(|| {
                format!(
                    "configuration: delivery.relay {:?}",
                    outbox_smtp::redact(relay)
                )
            })?;
        }
        let h = &self.http;
        if h.header_timeout.0.is_zero() {
            bail!("configuration: http.header_timeout must be more than 0s");
        }
        if h.body_timeout.0.is_zero() {
            bail!("configuration: http.body_timeout must be more than 0s");
        }
        if h.max_connections == 0 {
            bail!("configuration: http.max_connections must be at least 1");
        }
        if h.max_connections_per_client == 0 {
            bail!("configuration: http.max_connections_per_client must be at least 1");
        }
        if h.max_auth_failures == 0 {
            bail!("configuration: http.max_auth_failures must be at least 1");
        }
        if h.auth_failure_window.0.is_zero() {
            bail!("configuration: http.auth_failure_window must be more than 0s");
        }
        for text in &h.throttle_exempt {
            text.parse::<outbox_smtp::server::Network>()
                .with_context(|| "configuration: http.throttle_exempt")?;
        }
        let l = &self.smtp_listener;
        if l.cert_file.is_some() != l.key_file.is_some() {
            bail!("configuration: smtp_listener.cert_file and key_file go together");
        }
        if l.require_tls && l.cert_file.is_none() {
            bail!("configuration: smtp_listener.require_tls needs cert_file and key_file");
        }
        for (key, value) in [
            ("max_connections", l.max_connections),
            ("max_connections_per_client", l.max_connections_per_client),
            ("max_recipients", l.max_recipients),
            ("max_commands", l.max_commands as usize),
            ("max_errors", l.max_errors as usize),
            ("max_auth_failures", l.max_auth_failures as usize),
            (
                "max_auth_failures_per_client",
                l.max_auth_failures_per_client as usize,
            ),
        ] {
            if value == 0 {
                bail!("configuration: smtp_listener.{key} must be at least 1");
            }
        }
        if l.idle_timeout.0.is_zero() {
            bail!("configuration: smtp_listener.idle_timeout must be more than 0s");
        }
        Ok(())
    }
}

/// The machine's host name, for EHLO; `localhost` when it cannot be read.
fn default_helo_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty() && !name.contains(char::is_whitespace))
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn parse(text: &str) -> anyhow::Result<Config> {
        from_table(text.parse()?, None)
    }

    #[test]
    fn the_documented_example_is_a_valid_configuration() {
        let docs = include_str!("../../../../docs/configuration.md");
        let example = docs
            .split("## Example")
            .nth(1)
            .and_then(|rest| rest.split("```toml").nth(1))
            .and_then(|rest| rest.split("```").next())
            .expect("docs/configuration.md has an Example toml block");
        let config = parse(example).unwrap_or_else(|err| panic!("{err:#}\n{example}"));
        assert_eq!(config.shaping.len(), 1);
        assert!(config.mta_sts.enabled);
    }

    #[test]
    fn shaping_entries_become_engine_rules() {
        let config = parse(
            r#"
            [delivery]
            max_message_rate = "300/min"
            max_recipients_per_transaction = 50
            [[shaping]]
            mx_suffix = ".google.com"
            max_connections = 5
            messages_per_connection = 50
            max_message_rate = "20/s"
            max_recipients_per_transaction = 100
            on_reply = [{ pattern = "(?i)too many connections|rate limit", suspend = "10m" }]
            [[shaping]]
            domain = "Example.COM"
            max_connections = 1
            "#,
        )
        .unwrap();
        let engine = crate::app::engine_config(&config).unwrap();
        assert_eq!(engine.max_message_rate.unwrap().to_string(), "300/min");
        assert_eq!(engine.max_recipients_per_transaction, 50);
        assert_eq!(engine.shaping.len(), 2);
        let google = &engine.shaping[0];
        assert_eq!(
            google.matches,
            outbox_queue::engine::shaping::ShapingMatch::MxSuffix(".google.com".into())
        );
        assert_eq!(google.max_message_rate.unwrap().to_string(), "20/s");
        assert_eq!(google.on_reply[0].suspend, Duration::from_secs(600));
        assert!(
            google.on_reply[0]
                .pattern
                .is_match("421 4.7.0 Rate limit exceeded")
        );
        assert_eq!(
            engine.shaping[1].matches,
            outbox_queue::engine::shaping::ShapingMatch::Domain("example.com".into())
        );
    }

    #[test]
    fn bad_shaping_entries_are_named() {
        for (text, wanted) in [
            (
                "[[shaping]]\nmax_connections = 2",
                "needs a domain or an mx_suffix",
            ),
            (
                "[[shaping]]\ndomain = \"a.test\"\nmx_suffix = \".b.test\"",
                "both domain and mx_suffix",
            ),
            (
                "[[shaping]]\ndomain = \"a.test\"\nmax_connections = 0",
                "max_connections must be at least 1",
            ),
            (
                "[[shaping]]\ndomain = \"a.test\"\nmax_message_rate = \"20/day\"",
                "\"20/day\" is not a rate",
            ),
            (
                "[[shaping]]\ndomain = \"a.test\"\non_reply = [{ pattern = \"(\", suspend = \"1m\" }]",
                "on_reply pattern \"(\"",
            ),
            (
                "[[shaping]]\ndomain = \"a.test\"\nmax_conections = 2",
                "unknown field `max_conections`",
            ),
            (
                "[delivery]\nmax_recipients_per_transaction = 0",
                "max_recipients_per_transaction must be at least 1",
            ),
        ] {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains(wanted), "{text}: {err}");
        }
    }

    #[test]
    fn unsubscribe_settings_go_together_and_never_show_the_secret() {
        assert!(parse("").unwrap().unsubscribe.links().unwrap().is_none());
        let good = parse(
            "[unsubscribe]\nbase_url = \"https://mail.example.com/\"\n\
             secret = \"0123456789abcdef-secret\"\nmailto = \"unsubscribe@example.com\"\n",
        )
        .unwrap();
        let links = good.unsubscribe.required().unwrap();
        assert!(
            links
                .link("a@b.test", "l", None)
                .starts_with("https://mail.example.com/u/")
        );
        for (text, wanted) in [
            (
                "[unsubscribe]\nbase_url = \"https://x.test\"\n",
                "unsubscribe.base_url and unsubscribe.secret go together",
            ),
            (
                "[unsubscribe]\nmailto = \"u@x.test\"\n",
                "unsubscribe.base_url and unsubscribe.secret go together",
            ),
            (
                "[unsubscribe]\nbase_url = \"x.test\"\nsecret = \"shh-0123456789abcdef\"\n",
                "unsubscribe.base_url \"x.test\": must be an absolute https://",
            ),
            (
                "[unsubscribe]\nbase_url = \"https://x.test\"\nsecret = \"shh-short\"\n",
                "unsubscribe.secret: must be at least 16 octets (it is 9)",
            ),
            (
                "[unsubscribe]\nsecret = 12345678901234567\n",
                "unsubscribe.secret must be a string (value not shown",
            ),
        ] {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains(wanted), "{text}: {err}");
            assert!(
                !err.contains("shh-") && !err.contains("1234567890"),
                "{err}"
            );
        }
        let none = parse("").unwrap();
        let err = none.unsubscribe.required().unwrap_err().to_string();
        assert!(
            err.starts_with("list_unsubscribe: set [unsubscribe] base_url and secret"),
            "{err}"
        );
    }

    #[test]
    fn defaults_match_the_seed() {
        let config = parse("").unwrap();
        assert_eq!(config.database, "sqlite://outbox.db");
        assert_eq!(config.delivery.max_connections, 5);
        assert_eq!(config.delivery.messages_per_connection, 100);
        assert_eq!(config.delivery.max_message_size, ByteSize(8_000_000));
        assert_eq!(config.delivery.mx_port, 25);
        assert_eq!(config.delivery.retry_backoff().len(), 5);
        assert!(
            !config.delivery.allow_program_relay,
            "a program relay stored on a message is opt-in"
        );
        assert_eq!(config.http.listen.to_string(), "127.0.0.1:8025");
        assert!(config.smtp_listener.listen.is_none());
        assert!(config.smtp_listener.trusted_networks.is_empty());
        // DESIGN §10.
        let l = &config.smtp_listener;
        assert_eq!(l.max_connections, 200);
        assert_eq!(l.max_connections_per_client, 20);
        assert_eq!(l.max_recipients, 1000);
        assert_eq!(l.idle_timeout.0, Duration::from_secs(300));
        assert!(is_domain(&config.sendmail.domain));
    }

    #[test]
    fn http_throttle_exempt_takes_networks_and_refuses_anything_else() {
        assert!(Config::default().http.throttle_exempt.is_empty());
        let config = parse("[http]\nthrottle_exempt = [\"10.0.0.0/8\", \"::1\"]\n").unwrap();
        let exempt = config.http.throttle_exempt_networks();
        assert!(exempt[0].contains("10.1.2.3".parse().unwrap()));
        assert!(exempt[1].contains("::1".parse().unwrap()));
        let err = parse("[http]\nthrottle_exempt = [\"10.0.0.0/33\"]\n").unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("http.throttle_exempt"), "{text}");
        assert!(text.contains("10.0.0.0/33"), "{text}");
    }

    #[test]
    fn sendmail_domain() {
        let config = parse("[sendmail]\ndomain = \"host.example\"\n").unwrap();
        assert_eq!(config.sendmail.domain, "host.example");
        for bad in ["", "a b", "root@host.example", "-bad-"] {
            let err = parse(&format!("[sendmail]\ndomain = \"{bad}\"\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("sendmail.domain"), "{bad}: {err}");
        }
    }

    #[test]
    fn http_defaults() {
        let config = Config::default();
        assert!(
            !config.http.allow_relay,
            "DESIGN §10: relays over HTTP are opt-in"
        );
        assert_eq!(config.http.header_timeout.0, Duration::from_secs(30));
        assert_eq!(config.http.max_connections, 512);
        assert_eq!(config.http.max_connections_per_client, 128);
        let err = parse("[http]\nmax_connections_per_client = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.max_connections_per_client"), "{err}");
    }

    #[test]
    fn listener_limits_parse_and_zero_is_refused() {
        let config = parse(
            "[smtp_listener]\nmax_connections = 5\nmax_connections_per_client = 2\n\
             max_recipients = 3\nidle_timeout = \"10s\"\nmax_commands = 50\nmax_errors = 4\n\
             max_auth_failures = 2\nmax_auth_failures_per_client = 6\nauth_failure_window = \"1m\"\n",
        )
        .unwrap();
        let l = &config.smtp_listener;
        assert_eq!(
            (
                l.max_connections,
                l.max_connections_per_client,
                l.max_recipients
            ),
            (5, 2, 3)
        );
        assert_eq!(l.idle_timeout.0, Duration::from_secs(10));
        assert_eq!(l.auth_failure_window.0, Duration::from_secs(60));
        let err = parse("[smtp_listener]\nmax_connections_per_client = 0\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("smtp_listener.max_connections_per_client"),
            "{err}"
        );
    }

    #[test]
    fn design_example_parses() {
        let config = parse(
            r#"
database = "postgres://user@127.0.0.1:5432/db"
[delivery]
relay = "smtp://127.0.0.1:2525"
max_connections = 3
retry_backoff = ["1m", "5m"]
max_message_size = "8MB"
helo_name = "outbox.example"
connect_timeout = "30s"
command_timeout = "5m"
mx_port = 2525
lease = "10s"
[dns]
nameservers = ["127.0.0.1:5353"]
[tls]
ca_file = "tests/ca.pem"
[http]
listen = "127.0.0.1:8025"
tokens = ["a-long-random-token"]
[smtp_listener]
listen = "127.0.0.1:2587"
users = { app = "app-password" }
trusted_networks = ["127.0.0.1/32"]
"#,
        )
        .unwrap();
        assert_eq!(
            config.delivery.relay.as_deref(),
            Some("smtp://127.0.0.1:2525")
        );
        assert_eq!(
            config.delivery.retry_backoff(),
            [Duration::from_secs(60), Duration::from_secs(300)]
        );
        assert_eq!(config.dns.nameservers[0].port(), 5353);
        assert_eq!(config.smtp_listener.users["app"], "app-password");
    }

    #[test]
    fn named_timeouts_follow_rfc_5321_and_reach_the_client() {
        let d = parse("").unwrap().delivery;
        let t = d.timeouts();
        let minutes = |m: u64| Duration::from_secs(m * 60);
        assert_eq!(t.connect, Duration::from_secs(30));
        assert_eq!(t.greeting, minutes(5));
        assert_eq!(t.mail_from, minutes(5));
        assert_eq!(t.rcpt_to, minutes(5));
        assert_eq!(t.data_init, minutes(2));
        assert_eq!(t.data_block, minutes(3));
        assert_eq!(t.data_term, minutes(10));
        assert_eq!(
            (t.ehlo, t.starttls, t.quit, t.command),
            (minutes(5), minutes(5), minutes(5), minutes(5))
        );

        let d = parse(
            "[delivery]\nconnect_timeout = \"1s\"\ngreeting_timeout = \"300ms\"\n\
             mail_timeout = \"2s\"\nrcpt_timeout = \"3s\"\ndata_timeout = \"4s\"\n\
             data_block_timeout = \"5s\"\ndata_end_timeout = \"6s\"\ncommand_timeout = 7\n",
        )
        .unwrap()
        .delivery;
        let t = d.timeouts();
        assert_eq!(t.connect, Duration::from_secs(1));
        assert_eq!(t.greeting, Duration::from_millis(300));
        assert_eq!(t.mail_from, Duration::from_secs(2));
        assert_eq!(t.rcpt_to, Duration::from_secs(3));
        assert_eq!(t.data_init, Duration::from_secs(4));
        assert_eq!(t.data_block, Duration::from_secs(5));
        assert_eq!(t.data_term, Duration::from_secs(6));
        for step in [t.ehlo, t.starttls, t.auth, t.rset, t.quit, t.command] {
            assert_eq!(step, Duration::from_secs(7));
        }

        let err = parse("[delivery]\ngreeting_timeout = \"0s\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("delivery.greeting_timeout"), "{err}");
        let err = parse("[delivery]\ndata_end_timeout = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("soon"), "{err}");
    }

    #[test]
    fn typos_are_errors() {
        let err = parse("[delivery]\nmax_conections = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_conections"), "{err}");
        let err = parse("[delivery]\nmax_message_size = \"8 parsecs\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown size unit"), "{err}");
        let err = parse("[delivery]\nmax_connections = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_connections"), "{err}");
    }

    #[test]
    fn bounce_domain_needs_a_secret_and_a_domain() {
        let config = parse(
            "[bounces]\ndomain = \"Bounces.Example.com\"\nsecret = \"0123456789abcdef\"\nmax_report_size = \"64KB\"\n[complaints]\naddress = \"fbl@example.com\"\n",
        )
        .unwrap();
        let verp = config.bounces.verp().unwrap();
        assert_eq!(verp.domain(), "bounces.example.com");
        assert_eq!(verp.recipient(&verp.return_path(9)), Some(9));
        assert_eq!(config.bounces.max_report_size, Some(ByteSize(64_000)));
        assert!(parse("").unwrap().bounces.verp().is_none());
        for (text, expected) in [
            (
                "[bounces]\ndomain = \"b.example.com\"\n",
                "bounces.secret is required",
            ),
            (
                "[bounces]\nsecret = \"0123456789abcdef\"\n",
                "without bounces.domain",
            ),
            (
                "[bounces]\ndomain = \"not a domain\"\nsecret = \"0123456789abcdef\"\n",
                "bounces.domain must be a domain name",
            ),
            (
                "[complaints]\naddress = \"fbl\"\n",
                "complaints.address must be an address",
            ),
            ("[bounces]\ndomian = \"x\"\n", "unknown field"),
        ] {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn errors_never_show_secrets() {
        for (text, secret) in [
            (
                "[delivery]\nrelay = \"smtp://mailer:relay-Secret9@relay.test:99999\"\n",
                "relay-Secret9",
            ),
            (
                "[delivery]\nrelay = \"mailer:relay-Secret9@relay.test\"\n",
                "relay-Secret9",
            ),
            (
                "[delivery]\nrelay = \"smtp://mailer:relay?Secret9@relay.test?starttls=maybe\"\n",
                "Secret9",
            ),
            (
                "[http]\ntokens = \"tok-Secret-123456\"\n",
                "tok-Secret-123456",
            ),
            (
                "[http]\ntokens = [\"tok-Secret-123456\", 7]\n",
                "tok-Secret-123456",
            ),
            (
                "[smtp_listener]\nusers = { app = 424242424242 }\n",
                "424242424242",
            ),
            (
                "[smtp_listener]\nusers = \"app=listener-Secret\"\n",
                "listener-Secret",
            ),
            (
                "[bounces]\ndomain = \"b.example.com\"\nsecret = 12345678901234567\n",
                "12345678901234567",
            ),
            (
                "[bounces]\ndomain = \"b.example.com\"\nsecret = \"short-Secret\"\n",
                "short-Secret",
            ),
            // A secret can also turn up in an unrelated error through a typo in another key.
            (
                "[http]\ntokens = [\"tok-Secret-123456\"]\n[delivery]\nhelo_name = \"tok-Secret-123456 x\"\n",
                "tok-Secret-123456",
            ),
        ] {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(!err.contains(secret), "{text}: {err}");
            assert!(err.starts_with("configuration: "), "{err}");
        }
        let err = format!(
            "{:#}",
            parse("[delivery]\nrelay = \"smtp://mailer:relay-Secret9@relay.test:99999\"\n")
                .unwrap_err()
        );
        assert!(err.contains("smtp://mailer:***@relay.test:99999"), "{err}");
        assert!(err.contains("invalid port"), "{err}");
    }
}
