//! `outbox mx DOMAIN [--refresh] [--tls]` (Lasso's `email_mxlookup`): the hosts that receive
//! mail for a domain, in the order delivery tries them; with `--tls`, what each address says
//! to STARTTLS and whether its certificate is valid for the host's name.
//!
//! Text output is one line `PREF HOST` per host, each followed by indented detail lines
//! (`--tls`), so that a line about the domain (its MTA-STS mode) can come first.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use std::sync::Arc;

use anyhow::Context;
use outbox_smtp::ClientConfig;
use outbox_smtp::direct::{TlsProbe, probe_tls};
use outbox_smtp::mta_sts::{MtaSts, PolicyLookup};
use outbox_smtp::mx::{DnsMxResolver, MxError, MxHost, ResolverSettings};
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

    /// Also connect to each address on `[delivery] mx_port`: is STARTTLS offered, and is the
    /// certificate valid for the host name (web PKI roots and `[tls] ca_file`)?
    #[arg(long)]
    pub tls: bool,
}

/// No probe step waits longer than this, whatever the delivery timeouts say: an operator
/// is waiting at the terminal.
const PROBE_STEP_LIMIT: Duration = Duration::from_secs(30);

/// One line of `--json` output.
#[derive(Debug, Serialize)]
struct HostLine {
    preference: u16,
    host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    addresses: Option<Vec<String>>,
    /// `--tls`: one probe per address.
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<Vec<AddressProbe>>,
    /// `--tls`: why the host's addresses could not be found.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// `--tls`: the domain's MTA-STS policy and whether it lets delivery use this host.
    #[serde(skip_serializing_if = "Option::is_none")]
    mta_sts: Option<HostPolicy>,
}

/// The domain's MTA-STS answer as it applies to one host, in `--json` output.
#[derive(Debug, Serialize)]
struct HostPolicy {
    /// `enforce`, `testing`, `none` (no policy), or `disabled` (`[mta_sts] enabled = false`).
    mode: String,
    /// Why: the policy id fetched or cached, or why there is none.
    reason: String,
    /// The host matches the policy's `mx` patterns (always true without a policy).
    allowed: bool,
}

/// The MTA-STS line of the text output and the per-host view of it.
struct DomainPolicy {
    mode: String,
    reason: String,
    lookup: Option<PolicyLookup>,
}

impl DomainPolicy {
    /// Looks the domain's policy up as delivery would (fresh: nothing is cached yet).
    async fn lookup(config: &Config, domain: &str) -> anyhow::Result<DomainPolicy> {
        let Some(settings) = config.mta_sts.settings() else {
            return Ok(DomainPolicy {
                mode: "disabled".into(),
                reason: "[mta_sts] enabled = false".into(),
                lookup: None,
            });
        };
        let tls = crate::app::client_config(config).tls;
        let mta_sts = MtaSts::new(Arc::new(resolver(config)?), &tls, settings)
            .context("configuration: tls.ca_file")?;
        let lookup = mta_sts.policy(domain).await;
        Ok(DomainPolicy {
            mode: lookup
                .mode()
                .map_or_else(|| "none".to_string(), |mode| mode.to_string()),
            reason: lookup.reason.clone(),
            lookup: Some(lookup),
        })
    }

    fn for_host(&self, host: &str) -> HostPolicy {
        let allowed = self
            .lookup
            .as_ref()
            .and_then(|lookup| lookup.policy.as_ref())
            .is_none_or(|policy| policy.matches(host));
        HostPolicy {
            mode: self.mode.clone(),
            reason: self.reason.clone(),
            allowed,
        }
    }
}

/// One address's TLS probe in `--json` output.
#[derive(Debug, Serialize)]
struct AddressProbe {
    address: String,
    starttls: bool,
    /// `null` when no certificate was seen.
    certificate_valid: Option<bool>,
    certificate_error: Option<String>,
    error: Option<String>,
}

impl AddressProbe {
    fn new(ip: IpAddr, probe: TlsProbe) -> AddressProbe {
        AddressProbe {
            address: ip.to_string(),
            starttls: probe.starttls,
            certificate_valid: probe.certificate.as_ref().map(Result::is_ok),
            certificate_error: probe.certificate.and_then(Result::err),
            error: probe.error,
        }
    }

    /// The indented text line: `  ADDRESS: what STARTTLS and the certificate gave`.
    fn text(&self, host: &str) -> String {
        let mut line = format!("  {}: ", self.address);
        if !self.starttls {
            match &self.error {
                Some(error) => line.push_str(&format!("no SMTP session: {error}")),
                None => line.push_str("STARTTLS not offered"),
            }
            return line;
        }
        line.push_str("STARTTLS offered");
        match (&self.certificate_valid, &self.certificate_error) {
            (Some(true), _) => line.push_str(&format!("; certificate valid for {host}")),
            (Some(false), Some(reason)) => {
                line.push_str(&format!("; certificate not valid for {host}: {reason}"));
            }
            _ => {}
        }
        if let Some(error) = &self.error {
            line.push_str(&format!("; failed: {error}"));
        }
        line
    }
}

/// The client settings for the probe: the delivery settings with each step capped at
/// [`PROBE_STEP_LIMIT`].
fn probe_client(config: &Config) -> ClientConfig {
    let client = crate::app::client_config(config);
    let mut timeouts = client.timeouts;
    for step in [
        &mut timeouts.connect,
        &mut timeouts.greeting,
        &mut timeouts.ehlo,
        &mut timeouts.starttls,
        &mut timeouts.command,
        &mut timeouts.quit,
    ] {
        *step = (*step).min(PROBE_STEP_LIMIT);
    }
    client.with_timeouts(timeouts)
}

/// Each host with its addresses (or why they could not be found) and, with `probe`, each
/// address's TLS probe — all addresses probed at once.
async fn host_lines(
    resolver: &DnsMxResolver,
    hosts: Vec<MxHost>,
    probe: Option<(&ClientConfig, u16)>,
) -> Vec<HostLine> {
    let mut lines = Vec::with_capacity(hosts.len());
    for host in hosts {
        // A host whose addresses cannot be found is still listed (delivery skips it).
        let found = resolver.addresses(&host.host).await;
        let mut line = HostLine {
            preference: host.preference,
            addresses: found
                .as_ref()
                .ok()
                .map(|ips| ips.iter().map(ToString::to_string).collect()),
            host: host.host,
            tls: None,
            error: None,
            mta_sts: None,
        };
        if let Some((client, port)) = probe {
            match found {
                Ok(ips) => {
                    let probes = ips
                        .iter()
                        .map(|ip| probe_tls(SocketAddr::new(*ip, port), &line.host, client));
                    let results = futures_util::future::join_all(probes).await;
                    line.tls = Some(
                        ips.into_iter()
                            .zip(results)
                            .map(|(ip, probe)| AddressProbe::new(ip, probe))
                            .collect(),
                    );
                }
                Err(error) => line.error = Some(error.to_string()),
            }
        }
        lines.push(line);
    }
    lines
}

/// The resolver the configuration asks for: `[dns] nameservers`, else the system's.
pub fn resolver(config: &Config) -> anyhow::Result<DnsMxResolver> {
    let mut settings = ResolverSettings::default();
    settings.nameservers = config.dns.nameservers.clone();
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
    if !globals.json && !args.tls {
        for host in &hosts {
            println!("{} {}", host.preference, host.host);
        }
        return Ok(());
    }
    let client;
    let probe = if args.tls {
        crate::app::check_ca_file(&config)?;
        client = probe_client(&config);
        Some((&client, config.delivery.mx_port))
    } else {
        None
    };
    let policy = match args.tls {
        true => Some(DomainPolicy::lookup(&config, &args.domain).await?),
        false => None,
    };
    let mut lines = host_lines(&resolver, hosts, probe).await;
    if let Some(policy) = &policy {
        for line in &mut lines {
            line.mta_sts = Some(policy.for_host(&line.host));
        }
    }
    if globals.json {
        println!("{}", serde_json::to_string_pretty(&lines)?);
        return Ok(());
    }
    if let Some(policy) = &policy {
        println!("mta-sts: {} ({})", policy.mode, policy.reason);
    }
    for line in &lines {
        println!("{} {}", line.preference, line.host);
        if let Some(host_policy) = &line.mta_sts
            && !host_policy.allowed
        {
            let effect = match host_policy.mode.as_str() {
                "enforce" => "delivery skips it",
                _ => "delivery would skip it under enforce",
            };
            println!("  not an MX host of the MTA-STS policy: {effect}");
        }
        if let Some(error) = &line.error {
            println!("  no addresses: {error}");
        }
        for probe in line.tls.iter().flatten() {
            println!("{}", probe.text(&line.host));
        }
    }
    Ok(())
}
