//! `outbox mx DOMAIN [--refresh]` (Lasso's `email_mxlookup`): the hosts that receive mail for
//! a domain, in the order delivery tries them.

use anyhow::Context;
use outbox_smtp::mx::{DnsMxResolver, MxError, ResolverSettings};
use serde::Serialize;

use crate::cli::Globals;
use crate::config::Config;
use crate::exit::{EX_TEMPFAIL, Exit};

/// Arguments of `outbox mx`.
#[derive(Debug, clap::Args)]
pub struct MxArgs {
    /// The domain whose mail hosts to list.
    pub domain: String,

    /// Ask DNS again instead of answering from the cache.
    #[arg(long)]
    pub refresh: bool,
}

/// One line of `--json` output.
#[derive(Debug, Serialize)]
struct HostLine {
    preference: u16,
    host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    addresses: Option<Vec<String>>,
}

/// The resolver the configuration asks for: `[dns] nameservers`, else the system's.
pub fn resolver(config: &Config) -> anyhow::Result<DnsMxResolver> {
    let settings = ResolverSettings {
        nameservers: config.dns.nameservers.clone(),
        ..ResolverSettings::default()
    };
    DnsMxResolver::new(&settings).context("DNS resolver")
}

/// A DNS failure that may pass exits with EX_TEMPFAIL; an answer that says "no mail here"
/// (null MX, no such domain) with 1.
fn lookup_failure(error: MxError) -> anyhow::Error {
    if error.is_transient() {
        Exit::new(EX_TEMPFAIL, error.to_string()).into()
    } else {
        error.into()
    }
}

/// Runs `outbox mx`.
pub async fn run(globals: &Globals, args: MxArgs) -> anyhow::Result<()> {
    let config = globals.config()?;
    let resolver = resolver(&config)?;
    let hosts = resolver
        .lookup(&args.domain, args.refresh)
        .await
        .map_err(lookup_failure)?;
    if !globals.json {
        for host in &hosts {
            println!("{} {}", host.preference, host.host);
        }
        return Ok(());
    }
    let mut lines = Vec::with_capacity(hosts.len());
    for host in hosts {
        // A host whose addresses cannot be found is still listed (delivery skips it).
        let addresses = resolver
            .addresses(&host.host)
            .await
            .ok()
            .map(|ips| ips.iter().map(ToString::to_string).collect());
        lines.push(HostLine {
            preference: host.preference,
            host: host.host,
            addresses,
        });
    }
    println!("{}", serde_json::to_string_pretty(&lines)?);
    Ok(())
}
