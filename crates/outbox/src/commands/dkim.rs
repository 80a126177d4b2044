//! `outbox dkim keygen|check` (DESIGN §10): make a signing key and print its DNS record;
//! check that the published record holds the key.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use outbox_mime::dkim::DkimKey;
use rsa::pkcs8::{EncodePrivateKey as _, LineEnding};

use crate::cli::Globals;
use crate::config::Config;
use crate::exit::{EX_TEMPFAIL, Exit};

/// `outbox dkim`.
#[derive(Debug, clap::Args)]
pub struct DkimArgs {
    #[command(subcommand)]
    pub command: DkimCommand,
}

/// The `dkim` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DkimCommand {
    /// Write a new private key (mode 0600, never over an existing file) and print the
    /// TXT record to publish.
    Keygen(KeygenArgs),
    /// Look up SELECTOR._domainkey.DOMAIN and exit 0 when it publishes the key.
    Check(CheckArgs),
}

/// The key types `keygen` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyType {
    /// RSA, 2048 bits: verified everywhere.
    Rsa,
    /// Ed25519 (RFC 8463): small; not every receiver verifies it yet.
    Ed25519,
}

/// `outbox dkim keygen`.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// The signing domain (d=).
    #[arg(long)]
    pub domain: String,
    /// The selector (s=).
    #[arg(long)]
    pub selector: String,
    /// The key type.
    #[arg(long, value_enum, default_value = "rsa")]
    pub algorithm: KeyType,
    /// Where to write the PEM private key; an existing file is never overwritten.
    #[arg(long)]
    pub out: PathBuf,
}

/// `outbox dkim check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The signing domain (d=).
    #[arg(long)]
    pub domain: String,
    /// The selector (s=).
    #[arg(long)]
    pub selector: String,
    /// The PEM private key; default: the key_file of the matching [[dkim]] entry.
    #[arg(long)]
    pub key: Option<PathBuf>,
}

/// Runs one `dkim` subcommand.
pub async fn run(globals: &Globals, args: DkimArgs) -> anyhow::Result<()> {
    match args.command {
        DkimCommand::Keygen(args) => keygen(&args),
        DkimCommand::Check(args) => check(&globals.config()?, &args).await,
    }
}

/// The record's owner name: `SELECTOR._domainkey.DOMAIN`.
fn record_name(selector: &str, domain: &str) -> String {
    format!(
        "{}._domainkey.{}",
        selector.trim(),
        domain.trim().trim_end_matches('.').to_ascii_lowercase()
    )
}

fn keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    let pem = match args.algorithm {
        KeyType::Rsa => {
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
                .context("generating the RSA key")?;
            key.to_pkcs8_pem(LineEnding::LF)
                .context("encoding the RSA key")?
                .to_string()
        }
        KeyType::Ed25519 => {
            DkimKey::generate_ed25519_pem().context("generating the Ed25519 key")?
        }
    };
    let key = DkimKey::from_pem(pem.as_bytes()).context("the generated key")?;
    write_new_private(&args.out, pem.as_bytes())?;
    println!(
        "{} TXT \"{}\"",
        record_name(&args.selector, &args.domain),
        key.dns_record()
    );
    Ok(())
}

/// Creates `path` with mode 0600 and writes `data`; refuses an existing file.
fn write_new_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|err| {
        if err.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!("{} exists; not overwriting it", path.display())
        } else {
            anyhow::anyhow!("cannot create {}: {err}", path.display())
        }
    })?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The key `check` compares with: `--key`, else the [[dkim]] entry for the domain and
/// selector.
fn check_key(config: &Config, args: &CheckArgs) -> anyhow::Result<DkimKey> {
    let path = match &args.key {
        Some(path) => path.clone(),
        None => config
            .dkim
            .iter()
            .find(|entry| {
                entry
                    .domain
                    .trim()
                    .trim_end_matches('.')
                    .eq_ignore_ascii_case(args.domain.trim().trim_end_matches('.'))
                    && entry.selector.trim() == args.selector.trim()
            })
            .map(|entry| entry.key_file.clone())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no [[dkim]] entry for domain {} and selector {}; give --key FILE",
                    args.domain,
                    args.selector
                )
            })?,
    };
    let pem = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    DkimKey::from_pem(&pem).with_context(|| format!("key {}", path.display()))
}

async fn check(config: &Config, args: &CheckArgs) -> anyhow::Result<()> {
    let key = check_key(config, args)?;
    let name = record_name(&args.selector, &args.domain);
    let resolver = crate::commands::mx::resolver(config)?;
    let records = resolver.txt(&name).await.map_err(|err| {
        let code = if err.is_transient() { EX_TEMPFAIL } else { 1 };
        Exit::new(code, format!("{name}: {err}"))
    })?;
    match verdict(&key, &records) {
        Ok(()) => {
            println!(
                "{name}: the published key matches ({})",
                key.algorithm().key_type()
            );
            Ok(())
        }
        Err(why) => Err(Exit::new(1, format!("{name}: {why}")).into()),
    }
}

/// Does one of `records` (TXT strings at the record name) publish `key`? Else what
/// differs, for the closest record.
fn verdict(key: &DkimKey, records: &[String]) -> Result<(), String> {
    let dkim: Vec<&String> = records
        .iter()
        .filter(|r| {
            let tags = tags(r);
            tags.iter().any(|(k, _)| k == "p")
                || tags.first().is_some_and(|(k, v)| k == "v" && v == "DKIM1")
        })
        .collect();
    if dkim.is_empty() {
        return Err(if records.is_empty() {
            "no TXT record".into()
        } else {
            format!("no DKIM record among {} TXT records", records.len())
        });
    }
    let mut problems = Vec::new();
    for record in dkim {
        match record_problem(key, record) {
            None => return Ok(()),
            Some(problem) => problems.push(problem),
        }
    }
    Err(problems.join("; "))
}

/// What is wrong with one record for `key`, or `None` when it publishes the key.
fn record_problem(key: &DkimKey, record: &str) -> Option<String> {
    let tags = tags(record);
    let tag = |name: &str| {
        tags.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if let Some(version) = tag("v")
        && version != "DKIM1"
    {
        return Some(format!("v={version} (expected DKIM1)"));
    }
    let published_type = tag("k").unwrap_or("rsa").to_ascii_lowercase();
    let key_type = key.algorithm().key_type();
    if published_type != key_type {
        return Some(format!(
            "the record is k={published_type}, the key is {key_type}"
        ));
    }
    let p: String = tag("p")?.split_whitespace().collect();
    if p.is_empty() {
        return Some("the key is revoked (empty p=)".into());
    }
    let Ok(published) = STANDARD.decode(p.as_bytes()) else {
        return Some("p= is not valid base64".into());
    };
    if key.matches_public_key(&published) {
        None
    } else {
        Some("p= is a different key".into())
    }
}

/// `tag=value` pairs of a DKIM record (RFC 6376 §3.2), names lowercased, values trimmed.
fn tags(record: &str) -> Vec<(String, String)> {
    record
        .split(';')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> DkimKey {
        let path = format!(
            "{}/../outbox-mime/testdata/dkim/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        DkimKey::from_pem(&std::fs::read(path).unwrap()).unwrap()
    }

    #[test]
    fn verdicts_say_what_differs() {
        let rsa = key("rsa2048.pem");
        let ed = key("ed25519.pem");
        assert_eq!(verdict(&rsa, &[rsa.dns_record()]), Ok(()));
        // Several strings joined, whitespace inside p=, and another TXT record beside it.
        let spaced = rsa
            .dns_record()
            .replacen("p=", "p= ", 1)
            .replace("AQAB", "AQ AB");
        assert_eq!(verdict(&rsa, &["other".into(), spaced]), Ok(()));
        assert_eq!(verdict(&rsa, &[]), Err("no TXT record".into()));
        assert_eq!(
            verdict(&rsa, &["google-site-verification=x".into()]),
            Err("no DKIM record among 1 TXT records".into())
        );
        assert_eq!(
            verdict(&rsa, &["v=DKIM1; k=rsa; p=".into()]),
            Err("the key is revoked (empty p=)".into())
        );
        assert_eq!(
            verdict(&rsa, &[ed.dns_record()]),
            Err("the record is k=ed25519, the key is rsa".into())
        );
        let other = key("rsa2048.pem")
            .dns_record()
            .replace("k=rsa", "k=ed25519");
        assert_eq!(verdict(&ed, &[other]), Err("p= is a different key".into()));
        assert_eq!(
            verdict(&ed, &["v=DKIM1; k=ed25519; p=!!".into()]),
            Err("p= is not valid base64".into())
        );
    }

    #[test]
    fn record_names_are_lowercase_domains() {
        assert_eq!(
            record_name("s2026", "Example.COM."),
            "s2026._domainkey.example.com"
        );
    }
}
