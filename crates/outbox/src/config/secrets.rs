//! Keeping secrets out of configuration errors.
//!
//! serde's messages quote the value they could not take (`invalid type: string "abc",
//! expected a sequence`), so a mistyped `[http] tokens` or a listener password of the wrong
//! type would be printed. Two guards: the keys that hold secrets are shape-checked first with
//! messages that name the key and never the value, and every other message is scrubbed of
//! every secret found in the raw table before it is shown.

use anyhow::bail;
use toml::{Table, Value};

/// Where secrets live in `outbox.toml`.
const SECRET_KEYS: &[(&str, &str)] = &[
    ("http", "tokens"),
    ("smtp_listener", "users"),
    ("delivery", "relay"),
    ("", "database"),
    ("unsubscribe", "secret"),
    ("bounces", "secret"),
];

fn lookup<'a>(table: &'a Table, section: &str, key: &str) -> Option<&'a Value> {
    if section.is_empty() {
        table.get(key)
    } else {
        table.get(section)?.as_table()?.get(key)
    }
}

/// Checks the types of the keys that hold secrets, naming the key and the expected type but
/// never the value.
pub fn check_shapes(table: &Table) -> anyhow::Result<()> {
    if let Some(tokens) = lookup(table, "http", "tokens") {
        let ok = tokens
            .as_array()
            .is_some_and(|items| items.iter().all(Value::is_str));
        if !ok {
            bail!(
                "configuration: http.tokens must be a list of strings, as tokens = [\"...\"] (value not shown: it holds secrets)"
            );
        }
    }
    if let Some(users) = lookup(table, "smtp_listener", "users") {
        match users.as_table() {
            None => bail!(
                "configuration: smtp_listener.users must be a table of user = \"password\" (value not shown: it holds secrets)"
            ),
            Some(users) => {
                if let Some((name, _)) = users.iter().find(|(_, password)| !password.is_str()) {
                    bail!(
                        "configuration: the password of smtp_listener.users.{name} must be a string (value not shown)"
                    );
                }
            }
        }
    }
    for (section, key) in [
        ("delivery", "relay"),
        ("", "database"),
        ("bounces", "secret"),
        ("unsubscribe", "secret"),
    ] {
        if lookup(table, section, key).is_some_and(|value| !value.is_str()) {
            let name = if section.is_empty() {
                key.to_string()
            } else {
                format!("{section}.{key}")
            };
            bail!(
                "configuration: {name} must be a string (value not shown: it may hold a password)"
            );
        }
    }
    Ok(())
}

/// Every secret in the raw table: tokens, listener passwords, and the passwords of the relay
/// and database URLs.
pub fn collect(table: &Table) -> Vec<String> {
    let scalar = |value: &Value| match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let mut secrets = Vec::new();
    for &(section, key) in SECRET_KEYS {
        let Some(value) = lookup(table, section, key) else {
            continue;
        };
        match value {
            Value::String(url) if matches!(key, "relay" | "database") => {
                secrets.extend(url_password(url));
            }
            Value::Array(items) => secrets.extend(items.iter().map(scalar)),
            Value::Table(entries) => secrets.extend(entries.values().map(scalar)),
            other => secrets.push(scalar(other)),
        }
    }
    // `[[webhooks]] secret`: each entry's signing secret.
    if let Some(Value::Array(entries)) = table.get("webhooks") {
        for entry in entries {
            if let Some(secret) = entry.get("secret") {
                secrets.push(scalar(secret));
            }
        }
    }
    secrets.retain(|secret| !secret.is_empty());
    // Longest first, so a secret that contains another is replaced whole.
    secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    secrets
}

/// The password of `scheme://user:password@host...`, or of `?password=` in the query.
pub fn url_password(url: &str) -> Option<String> {
    let after_scheme = &url[url.find("://")? + 3..];
    let from_userinfo = after_scheme.rfind('@').and_then(|at| {
        after_scheme[..at]
            .split_once(':')
            .map(|(_, password)| password.to_string())
    });
    from_userinfo.or_else(|| {
        let query = url.split_once('?')?.1;
        query.split('&').find_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            name.eq_ignore_ascii_case("password")
                .then(|| value.to_string())
        })
    })
}

/// `message` with every secret replaced by `***`.
pub fn scrub(message: &str, secrets: &[String]) -> String {
    secrets.iter().fold(message.to_string(), |text, secret| {
        text.replace(secret.as_str(), "***")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Table {
        text.parse().unwrap()
    }

    #[test]
    fn mistyped_secret_keys_are_named_not_shown() {
        for text in [
            "[http]\ntokens = \"tok-secret-1\"\n",
            "[http]\ntokens = [\"tok-secret-1\", 5]\n",
            "[smtp_listener]\nusers = \"app:tok-secret-1\"\n",
            "[smtp_listener]\nusers = { app = 123456789 }\n",
            "[delivery]\nrelay = [\"smtp://u:tok-secret-1@h\"]\n",
        ] {
            let err = check_shapes(&table(text)).unwrap_err().to_string();
            assert!(
                !err.contains("tok-secret-1") && !err.contains("123456789"),
                "{err}"
            );
            assert!(err.starts_with("configuration: "), "{err}");
        }
        check_shapes(&table(
            "[http]\ntokens = [\"a\"]\n[smtp_listener]\nusers = { a = \"b\" }\n",
        ))
        .unwrap();
    }

    #[test]
    fn secrets_are_collected_and_scrubbed() {
        let secrets = collect(&table(
            "database = \"postgres://app:pg-pass@127.0.0.1/db\"\n\
             [delivery]\nrelay = \"smtp://u:relay-pass@h\"\n\
             [http]\ntokens = [\"token-one\"]\n\
             [smtp_listener]\nusers = { app = \"listener-pass\" }\n",
        ));
        let message = "pg-pass relay-pass token-one listener-pass";
        assert_eq!(scrub(message, &secrets), "*** *** *** ***");
        assert_eq!(
            url_password("postgres://h/db?sslmode=disable&password=q-pass").as_deref(),
            Some("q-pass")
        );
        assert_eq!(url_password("smtp://user@h"), None);
    }
}
