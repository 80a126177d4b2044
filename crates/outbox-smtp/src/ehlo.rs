//! EHLO capabilities (RFC 5321 §4.1.1.1): what a server says it supports, parsed from its
//! EHLO reply, and the keywords a server announces.

use std::fmt;

use crate::auth::Mechanism;
use crate::reply::Reply;

/// What a server offered in its EHLO reply. A server greeted with HELO offers nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The domain the server named on the first line.
    pub domain: String,
    /// RFC 2920 command pipelining.
    pub pipelining: bool,
    /// RFC 1870 SIZE: `Some(0)` means offered without a limit, `Some(n)` a limit in bytes.
    pub size: Option<u64>,
    /// RFC 6152 8BITMIME.
    pub eight_bit_mime: bool,
    /// RFC 6531 SMTPUTF8.
    pub smtputf8: bool,
    /// RFC 3207 STARTTLS.
    pub starttls: bool,
    /// RFC 2034 ENHANCEDSTATUSCODES.
    pub enhanced_status_codes: bool,
    /// RFC 4954 AUTH: the mechanisms offered that this crate knows, in the server's order.
    pub auth: Vec<Mechanism>,
    /// Every other keyword line, as received (e.g. `CHUNKING`, `DSN`).
    pub other: Vec<String>,
}

impl Capabilities {
    /// Parses an EHLO reply: the first line names the server, every later line is a keyword
    /// followed by parameters (RFC 5321 §4.1.1.1). Keywords are case-insensitive. Unknown
    /// keywords are kept in [`Capabilities::other`]; a malformed SIZE value counts as SIZE
    /// without a limit. The pre-RFC `AUTH=` form some servers still send is understood too.
    pub fn from_ehlo(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities {
            domain: reply
                .lines
                .first()
                .and_then(|line| line.split_whitespace().next())
                .unwrap_or_default()
                .to_string(),
            ..Capabilities::default()
        };
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            let upper = keyword.to_ascii_uppercase();
            match upper.as_str() {
                "PIPELINING" => caps.pipelining = true,
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "STARTTLS" => caps.starttls = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                "SIZE" => {
                    caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0));
                }
                "AUTH" => caps.add_auth(words),
                _ if upper.starts_with("AUTH=") => {
                    caps.add_auth(std::iter::once(&keyword[5..]).chain(words));
                }
                _ => caps.other.push(line.clone()),
            }
        }
        caps
    }

    fn add_auth<'a>(&mut self, names: impl Iterator<Item = &'a str>) {
        for name in names {
            if let Some(mechanism) = Mechanism::from_name(name)
                && !self.auth.contains(&mechanism)
            {
                self.auth.push(mechanism);
            }
        }
    }

    /// Whether a message of `len` bytes fits the server's SIZE limit (or there is none).
    pub fn accepts_size(&self, len: u64) -> bool {
        match self.size {
            None | Some(0) => true,
            Some(limit) => len <= limit,
        }
    }

    /// The EHLO reply lines that announce these capabilities after the greeting line, as a
    /// server would send them (useful for a server or a test peer).
    pub fn keyword_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.pipelining {
            lines.push("PIPELINING".to_string());
        }
        if let Some(size) = self.size {
            lines.push(if size == 0 {
                "SIZE".to_string()
            } else {
                format!("SIZE {size}")
            });
        }
        if self.eight_bit_mime {
            lines.push("8BITMIME".to_string());
        }
        if self.smtputf8 {
            lines.push("SMTPUTF8".to_string());
        }
        if self.starttls {
            lines.push("STARTTLS".to_string());
        }
        if self.enhanced_status_codes {
            lines.push("ENHANCEDSTATUSCODES".to_string());
        }
        if !self.auth.is_empty() {
            let names: Vec<&str> = self.auth.iter().map(|m| m.name()).collect();
            lines.push(format!("AUTH {}", names.join(" ")));
        }
        lines.extend(self.other.iter().cloned());
        lines
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.keyword_lines().join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::parse_reply;

    fn caps(wire: &str) -> Capabilities {
        let (reply, _) = parse_reply(wire.as_bytes()).unwrap().unwrap();
        Capabilities::from_ehlo(&reply)
    }

    #[test]
    fn postfix_style_ehlo() {
        let c = caps(
            "250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n\
             250-ETRN\r\n250-STARTTLS\r\n250-AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2\r\n\
             250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250 SMTPUTF8\r\n",
        );
        assert_eq!(c.domain, "mx.example.test");
        assert!(c.pipelining && c.starttls && c.eight_bit_mime && c.smtputf8);
        assert!(c.enhanced_status_codes);
        assert_eq!(c.size, Some(10_240_000));
        assert_eq!(
            c.auth,
            [Mechanism::Plain, Mechanism::Login, Mechanism::CramMd5]
        );
        assert_eq!(c.other, ["VRFY", "ETRN", "DSN"]);
        assert!(c.accepts_size(10_240_000));
        assert!(!c.accepts_size(10_240_001));
    }

    #[test]
    fn lower_case_keywords_and_old_auth_form() {
        let c = caps("250-x\r\n250-pipelining\r\n250-AUTH=LOGIN PLAIN\r\n250 size\r\n");
        assert!(c.pipelining);
        assert_eq!(c.auth, [Mechanism::Login, Mechanism::Plain]);
        assert_eq!(c.size, Some(0));
        assert!(c.accepts_size(u64::MAX));
    }

    #[test]
    fn one_line_reply_offers_nothing() {
        let c = caps("250 only.example\r\n");
        assert_eq!(c.domain, "only.example");
        assert!(!c.pipelining && c.size.is_none() && c.auth.is_empty());
    }

    #[test]
    fn keyword_lines_round_trip() {
        let c = caps("250-h\r\n250-PIPELINING\r\n250-SIZE 5\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n");
        let mut lines = vec!["h".to_string()];
        lines.extend(c.keyword_lines());
        assert_eq!(Capabilities::from_ehlo(&Reply::new(250, lines)), c);
    }
}
