//! `outbox smtp SERVER [--user U --password P]` (Lasso's `email_smtp`): an interactive SMTP
//! session. Connects (TLS as the server spec says), prints the greeting, then sends each line
//! of stdin as a command and prints the reply in full, until QUIT or end of input.
//!
//! After a 354 reply to DATA, lines are message text, sent as typed (the user writes the dots
//! as on a real session) until the `.` line, whose reply is printed. A STARTTLS answered 220
//! starts TLS, verified like every other connection.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use outbox_smtp::{
    BoxedStream, ClientConfig, Credentials, Reply, ServerSpec, SmtpClient, TlsConfig,
};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::cli::Globals;

/// Arguments of `outbox smtp`.
#[derive(Debug, clap::Args)]
pub struct SmtpArgs {
    /// The server: host[:port], [v6]:port, smtp://[user[:pass]@]host[:port][?starttls=...]
    /// or smtps://...
    #[arg(value_name = "SERVER")]
    pub server: String,

    /// User name for AUTH, after EHLO (and STARTTLS when offered or required).
    #[arg(long, value_name = "USER", requires = "password")]
    pub user: Option<String>,

    /// Password for AUTH.
    #[arg(
        long,
        value_name = "PASSWORD",
        requires = "user",
        env = "OUTBOX_SMTP_PASSWORD"
    )]
    pub password: Option<String>,

    /// A PEM file of extra CA certificates to trust (default: the config's [tls] ca_file).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

/// Runs `outbox smtp`.
pub async fn run(globals: &Globals, args: SmtpArgs) -> anyhow::Result<()> {
    let config = globals.config()?;
    let mut spec = match ServerSpec::parse(&args.server)
        .with_context(|| format!("server {:?}", args.server))?
    {
        ServerSpec::Smtp(spec) => spec,
        ServerSpec::Program(_) => bail!("outbox smtp talks to an SMTP server, not a program: spec"),
    };
    if let (Some(user), Some(password)) = (args.user, args.password) {
        spec.credentials = Some(Credentials::new(user, password));
    }
    let ca_file = args.ca_file.or(config.tls.ca_file.clone());
    let client_config = ClientConfig::new(config.delivery.helo_name.clone())
        .with_timeouts(config.delivery.timeouts())
        .with_tls(ca_file.map(TlsConfig::with_ca_file).unwrap_or_default());

    let mut client = SmtpClient::connect_with(&spec, &client_config).await?;
    let mut out = std::io::stdout();
    if let Some(greeting) = client.greeting() {
        print_reply(&mut out, greeting)?;
    }

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut in_data = false;
    while let Some(line) = lines.next_line().await.context("reading stdin")? {
        let line = line.strip_suffix('\r').unwrap_or(&line);
        if in_data {
            client.write_raw(format!("{line}\r\n").as_bytes()).await?;
            if line == "." {
                in_data = false;
                let reply = client.read_reply().await?;
                print_reply(&mut out, &reply)?;
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let verb = line
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply = client.command(line).await?;
        print_reply(&mut out, &reply)?;
        match verb.as_str() {
            "QUIT" => return Ok(()),
            "DATA" if reply.code == 354 => in_data = true,
            "STARTTLS" if reply.code == 220 => {
                client = client
                    .tls_handshake()
                    .await?
                    .map_stream(|stream| Box::new(stream) as BoxedStream);
            }
            _ => {}
        }
    }
    // End of input: leave politely; the server's answer to our own QUIT is not printed.
    if !in_data {
        client.quit().await?;
    }
    Ok(())
}

/// Prints a reply as the server sent it, one `CODE-text` line per line.
fn print_reply(out: &mut impl Write, reply: &Reply) -> anyhow::Result<()> {
    out.write_all(reply.to_wire().replace("\r\n", "\n").as_bytes())
        .and_then(|()| out.flush())
        .context("writing to stdout")
}
