//! `OUTBOX_<SECTION>_<KEY>` overrides: every configuration key can be set from the environment
//! (lists comma-separated, maps as `name=value,name=value`).

use anyhow::{Context, bail};
use toml::{Table, Value};

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Integer,
    Boolean,
    List,
    Map,
}

/// Every key of `outbox.toml`: (section, key, kind). "" is the top level.
const KEYS: &[(&str, &str, Kind)] = &[
    ("", "database", Kind::Text),
    ("delivery", "relay", Kind::Text),
    ("delivery", "max_connections", Kind::Integer),
    ("delivery", "messages_per_connection", Kind::Integer),
    ("delivery", "max_message_rate", Kind::Text),
    ("delivery", "max_recipients_per_transaction", Kind::Integer),
    ("delivery", "max_attempts", Kind::Integer),
    ("delivery", "retry_backoff", Kind::List),
    ("delivery", "max_message_size", Kind::Text),
    ("delivery", "helo_name", Kind::Text),
    ("delivery", "connect_timeout", Kind::Text),
    ("delivery", "greeting_timeout", Kind::Text),
    ("delivery", "mail_timeout", Kind::Text),
    ("delivery", "rcpt_timeout", Kind::Text),
    ("delivery", "data_timeout", Kind::Text),
    ("delivery", "data_block_timeout", Kind::Text),
    ("delivery", "data_end_timeout", Kind::Text),
    ("delivery", "command_timeout", Kind::Text),
    ("delivery", "mx_port", Kind::Integer),
    ("delivery", "lease", Kind::Text),
    ("delivery", "allow_program_relay", Kind::Boolean),
    ("dns", "nameservers", Kind::List),
    ("tls", "ca_file", Kind::Text),
    ("mta_sts", "enabled", Kind::Boolean),
    ("mta_sts", "https_port", Kind::Integer),
    ("mta_sts", "fetch_timeout", Kind::Text),
    ("mta_sts", "recheck_interval", Kind::Text),
    ("http", "listen", Kind::Text),
    ("http", "tokens", Kind::List),
    ("http", "attachment_dir", Kind::Text),
    ("http", "allow_relay", Kind::Boolean),
    ("http", "header_timeout", Kind::Text),
    ("http", "body_timeout", Kind::Text),
    ("http", "max_connections", Kind::Integer),
    ("http", "max_connections_per_client", Kind::Integer),
    ("http", "max_auth_failures", Kind::Integer),
    ("http", "auth_failure_window", Kind::Text),
    ("http", "throttle_exempt", Kind::List),
    ("http", "schedule_horizon", Kind::Text),
    ("smtp_listener", "listen", Kind::Text),
    ("smtp_listener", "users", Kind::Map),
    ("smtp_listener", "trusted_networks", Kind::List),
    ("smtp_listener", "cert_file", Kind::Text),
    ("smtp_listener", "key_file", Kind::Text),
    ("smtp_listener", "require_tls", Kind::Boolean),
    ("smtp_listener", "max_connections", Kind::Integer),
    ("smtp_listener", "max_connections_per_client", Kind::Integer),
    ("smtp_listener", "max_recipients", Kind::Integer),
    ("smtp_listener", "idle_timeout", Kind::Text),
    ("smtp_listener", "max_commands", Kind::Integer),
    ("smtp_listener", "max_errors", Kind::Integer),
    ("smtp_listener", "max_auth_failures", Kind::Integer),
    (
        "smtp_listener",
        "max_auth_failures_per_client",
        Kind::Integer,
    ),
    ("smtp_listener", "auth_failure_window", Kind::Text),
    ("sendmail", "domain", Kind::Text),
    ("unsubscribe", "base_url", Kind::Text),
    ("unsubscribe", "secret", Kind::Text),
    ("unsubscribe", "mailto", Kind::Text),
    ("bounces", "domain", Kind::Text),
    ("bounces", "secret", Kind::Text),
    ("bounces", "max_report_size", Kind::Text),
    ("complaints", "address", Kind::Text),
    ("events", "retention", Kind::Text),
    ("events", "webhook_timeout", Kind::Text),
    ("events", "webhook_retry_backoff", Kind::List),
    ("events", "webhook_batch_size", Kind::Integer),
    ("events", "poll_interval", Kind::Text),
];

/// Variables that start with `OUTBOX_` but are not configuration keys.
const NOT_KEYS: &[&str] = &["OUTBOX_CONFIG"];

fn var_name(section: &str, key: &str) -> String {
    if section.is_empty() {
        format!("OUTBOX_{}", key.to_ascii_uppercase())
    } else {
        format!(
            "OUTBOX_{}_{}",
            section.to_ascii_uppercase(),
            key.to_ascii_uppercase()
        )
    }
}

/// Applies the environment's overrides to the parsed file. A variable that names a known
/// section but no key of it is an error (a typo must not be ignored); variables outside the
/// known sections (`OUTBOX_TEST_...`) are not ours and are left alone.
pub fn apply(
    table: &mut Table,
    vars: impl Iterator<Item = (String, String)>,
) -> anyhow::Result<()> {
    for (name, raw) in vars {
        if !name.starts_with("OUTBOX_") || NOT_KEYS.contains(&name.as_str()) {
            continue;
        }
        let Some(&(section, key, kind)) = KEYS.iter().find(|(s, k, _)| var_name(s, k) == name)
        else {
            let in_known_section = KEYS.iter().any(|(section, _, _)| {
                !section.is_empty()
                    && name.starts_with(&format!("OUTBOX_{}_", section.to_ascii_uppercase()))
            });
            if in_known_section {
                bail!("environment variable {name} is not a configuration key");
            }
            continue;
        };
        let value = convert(&raw, kind).with_context(|| format!("environment variable {name}"))?;
        let target = if section.is_empty() {
            &mut *table
        } else {
            match table
                .entry(section.to_owned())
                .or_insert_with(|| Value::Table(Table::new()))
            {
                Value::Table(inner) => inner,
                _ => bail!("configuration: `{section}` must be a table"),
            }
        };
        target.insert(key.to_owned(), value);
    }
    Ok(())
}

fn convert(raw: &str, kind: Kind) -> anyhow::Result<Value> {
    let items = || {
        raw.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
    };
    Ok(match kind {
        Kind::Text => Value::String(raw.to_owned()),
        Kind::Integer => Value::Integer(
            raw.trim()
                .parse()
                .with_context(|| format!("`{raw}` is not a whole number"))?,
        ),
        Kind::Boolean => match raw.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Value::Boolean(true),
            "0" | "false" | "no" | "off" | "" => Value::Boolean(false),
            _ => bail!("`{raw}` is not true or false"),
        },
        Kind::List => Value::Array(items().map(|item| Value::String(item.to_owned())).collect()),
        Kind::Map => {
            let mut map = Table::new();
            for (index, item) in items().enumerate() {
                // The item is not quoted: in `users` it holds a password.
                let (name, value) = item.split_once('=').with_context(|| {
                    format!("item {} is not name=value (value not shown)", index + 1)
                })?;
                map.insert(name.trim().to_owned(), Value::String(value.to_owned()));
            }
            Value::Table(map)
        }
    })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::config::Config;

    fn vars(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn overrides_file_values() {
        let mut table: Table = "[delivery]\nmax_connections = 2\n".parse().unwrap();
        apply(
            &mut table,
            vars(&[
                ("OUTBOX_DELIVERY_MAX_CONNECTIONS", "7"),
                ("OUTBOX_DELIVERY_RETRY_BACKOFF", "10s, 1m"),
                ("OUTBOX_DNS_NAMESERVERS", "127.0.0.1:5353"),
                (
                    "OUTBOX_SMTP_LISTENER_USERS",
                    "app=secret,ops=pw=with=equals",
                ),
                ("OUTBOX_SMTP_LISTENER_REQUIRE_TLS", "false"),
                ("OUTBOX_DATABASE", "sqlite:///tmp/x.db"),
                ("OUTBOX_TEST_POSTGRES_URL", "postgres://ignored"),
                ("OUTBOX_CONFIG", "ignored.toml"),
            ]),
        )
        .unwrap();
        let config = Config::deserialize(Value::Table(table)).unwrap();
        assert_eq!(config.delivery.max_connections, 7);
        assert_eq!(config.delivery.retry_backoff().len(), 2);
        assert_eq!(config.dns.nameservers.len(), 1);
        assert_eq!(config.smtp_listener.users["ops"], "pw=with=equals");
        assert_eq!(config.database, "sqlite:///tmp/x.db");
    }

    #[test]
    fn every_key_reaches_the_config() {
        // A key listed here but missing from the structs would fail deny_unknown_fields.
        let samples = |kind| match kind {
            Kind::Text => "1",
            Kind::Integer => "3",
            Kind::Boolean => "false",
            Kind::List => "",
            Kind::Map => "",
        };
        for &(section, key, kind) in KEYS {
            let mut table = Table::new();
            let value = match (section, key) {
                (_, "listen") => "127.0.0.1:1",
                ("delivery", "lease") => "5s",
                ("delivery", key) if key.ends_with("_timeout") => "5s",
                ("mta_sts", "fetch_timeout" | "recheck_interval") => "5s",
                ("delivery", "max_message_size") => "1MB",
                ("delivery", "max_message_rate") => "20/s",
                _ => samples(kind),
            };
            apply(&mut table, vars(&[(&var_name(section, key), value)])).unwrap();
            Config::deserialize(Value::Table(table))
                .unwrap_or_else(|err| panic!("{section}.{key}: {err}"));
        }
    }

    #[test]
    fn throttle_exempt_is_a_comma_separated_list() {
        let mut table = Table::new();
        apply(
            &mut table,
            vars(&[("OUTBOX_HTTP_THROTTLE_EXEMPT", "127.0.0.1/32,::1")]),
        )
        .unwrap();
        let config = Config::deserialize(Value::Table(table)).unwrap();
        assert_eq!(config.http.throttle_exempt, ["127.0.0.1/32", "::1"]);
        assert_eq!(config.http.throttle_exempt_networks().len(), 2);
    }

    #[test]
    fn a_bad_map_item_is_not_quoted() {
        let err = apply(
            &mut Table::new(),
            vars(&[("OUTBOX_SMTP_LISTENER_USERS", "ok=x,app:pw-Secret-77")]),
        )
        .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("item 2 is not name=value"), "{text}");
        assert!(!text.contains("pw-Secret-77"), "{text}");
    }

    #[test]
    fn typo_in_a_known_section_is_an_error() {
        let err = apply(
            &mut Table::new(),
            vars(&[("OUTBOX_DELIVERY_MAX_CONECTIONS", "3")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("OUTBOX_DELIVERY_MAX_CONECTIONS"), "{err}");
        let err = apply(
            &mut Table::new(),
            vars(&[("OUTBOX_DELIVERY_MX_PORT", "twenty")]),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("not a whole number"));
    }
}
