use super::*;
use crate::fingerprint::Fingerprint;

fn smtp(text: &str) -> SmtpSpec {
    match ServerSpec::parse(text) {
        Ok(ServerSpec::Smtp(spec)) => spec,
        other => panic!("{text}: {other:?}"),
    }
}

#[test]
fn bare_hosts_and_ports() {
    let spec = smtp("mail.example.test");
    assert_eq!((spec.host.as_str(), spec.port), ("mail.example.test", 25));
    assert_eq!(spec.security, Security::OpportunisticStartTls);
    assert_eq!(smtp("127.0.0.1:2525").port, 2525);
    let v6 = smtp("[::1]:2525");
    assert_eq!((v6.host.as_str(), v6.port), ("::1", 2525));
    assert_eq!(smtp("[::1]").port, 25);
    assert_eq!(smtp("::1").host, "::1");
    assert_eq!(smtp("localhost.").host, "localhost.");
}

#[test]
fn smtp_urls() {
    let spec = smtp("smtp://us%40er:p%3Ass@mx.test:587?starttls=required&timeout=30");
    assert_eq!(spec.host, "mx.test");
    assert_eq!(spec.port, 587);
    assert_eq!(spec.security, Security::RequiredStartTls);
    assert_eq!(spec.credentials, Some(Credentials::new("us@er", "p:ss")));
    assert_eq!(spec.timeout, Some(Duration::from_secs(30)));
    assert_eq!(smtp("smtp://h").port, 25);
    assert_eq!(smtp("smtp://h/").security, Security::OpportunisticStartTls);
    assert_eq!(smtp("smtp://h?starttls=off").security, Security::NoTls);
    assert_eq!(
        smtp("SMTP://h?STARTTLS=Opportunistic").security,
        Security::OpportunisticStartTls
    );
    assert_eq!(
        smtp("smtp://h?timeout=2m").timeout,
        Some(Duration::from_secs(120))
    );
    assert_eq!(
        smtp("smtp://u:p@ss@h").credentials,
        Some(Credentials::new("u", "p@ss"))
    );
    assert_eq!(
        smtp("smtp://u@h").credentials,
        Some(Credentials::new("u", ""))
    );
}

#[test]
fn smtps_is_implicit_tls_on_465() {
    let spec = smtp("smtps://u:p@[::1]");
    assert_eq!(spec.security, Security::ImplicitTls);
    assert_eq!((spec.host.as_str(), spec.port), ("::1", 465));
    assert_eq!(smtp("smtps://h:2465").port, 2465);
}

#[test]
fn programs_split_like_a_shell_without_one() {
    let ServerSpec::Program(spec) =
        ServerSpec::parse(r#"program:/usr/sbin/sendmail -t -f "a b@x" 'c d'"#).unwrap()
    else {
        panic!("not a program");
    };
    assert_eq!(spec.program, "/usr/sbin/sendmail");
    assert_eq!(spec.args, ["-t", "-f", "a b@x", "c d"]);
}

#[test]
fn bad_specs_name_the_problem() {
    use SpecError::*;
    type Check = fn(&SpecError) -> bool;
    let cases: &[(&str, Check)] = &[
        ("", |e| matches!(e, Empty)),
        (
            "http://x",
            |e| matches!(e, UnknownScheme { scheme } if scheme == "http"),
        ),
        ("host:0", |e| matches!(e, InvalidPort { .. })),
        ("host:99999", |e| matches!(e, InvalidPort { .. })),
        ("host:+25", |e| matches!(e, InvalidPort { .. })),
        ("host:", |e| matches!(e, InvalidPort { .. })),
        ("ho st", |e| matches!(e, InvalidHost { .. })),
        ("smtp://", |e| matches!(e, InvalidHost { .. })),
        ("[::1", |e| matches!(e, InvalidHost { .. })),
        ("[nope]:25", |e| matches!(e, InvalidHost { .. })),
        ("a..b", |e| matches!(e, InvalidHost { .. })),
        ("-a.b", |e| matches!(e, InvalidHost { .. })),
        (
            "smtp://h?tls=1",
            |e| matches!(e, UnknownParameter { name } if name == "tls"),
        ),
        ("smtp://h?starttls=yes", |e| {
            matches!(e, InvalidParameter { .. })
        }),
        ("smtp://h?timeout=0", |e| {
            matches!(e, InvalidParameter { .. })
        }),
        ("smtp://h?timeout=soon", |e| {
            matches!(e, InvalidParameter { .. })
        }),
        ("smtps://h?starttls=off", |e| {
            matches!(e, StartTlsWithImplicitTls)
        }),
        (
            "smtp://h?tls_fingerprint=",
            |e| matches!(e, InvalidParameter { name, .. } if name == "tls_fingerprint"),
        ),
        (
            "smtp://h?tls_fingerprint=sha1:00",
            |e| matches!(e, InvalidParameter { name, .. } if name == "tls_fingerprint"),
        ),
        (
            "smtp://h?tls_fingerprint=sha256:0011",
            |e| matches!(e, InvalidParameter { name, .. } if name == "tls_fingerprint"),
        ),
        (
            "smtp://h?starttls=off&tls_fingerprint=sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
            |e| matches!(e, FingerprintWithoutTls),
        ),
        (
            "smtp://h?tls_fingerprint=sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff&starttls=off",
            |e| matches!(e, FingerprintWithoutTls),
        ),
        ("smtp://u:%zz@h", |e| {
            matches!(e, InvalidPercentEncoding { part: "password" })
        }),
        ("smtp://%ff@h", |e| {
            matches!(e, InvalidPercentEncoding { part: "user name" })
        }),
        ("smtp://h/path", |e| {
            matches!(e, Unexpected { what: "path", .. })
        }),
        ("smtp://h#frag", |e| {
            matches!(
                e,
                Unexpected {
                    what: "fragment",
                    ..
                }
            )
        }),
        ("program:", |e| matches!(e, InvalidProgram { .. })),
        ("program:sendmail 'open", |e| {
            matches!(e, InvalidProgram { .. })
        }),
    ];
    for (text, check) in cases {
        let err = ServerSpec::parse(text).expect_err(text);
        assert!(check(&err), "{text}: {err:?}");
        assert!(!err.to_string().is_empty());
    }
}

const PIN_HEX: &str = "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff";

#[test]
fn tls_fingerprint_pins_32_bytes() {
    let plain = smtp(&format!(
        "smtp://relay.test:587?tls_fingerprint=sha256:{PIN_HEX}"
    ));
    let pin = plain.tls_fingerprint.expect("a pin");
    assert_eq!(pin.as_bytes()[1], 0x11);
    assert_eq!(pin.as_bytes()[31], 0xff);
    assert_eq!(plain.security, Security::OpportunisticStartTls);
    // openssl's form: colons, upper case, and any case of the parameter and algorithm.
    let colons: Vec<&str> = (0..32).map(|i| &PIN_HEX[2 * i..2 * i + 2]).collect();
    let openssl = smtp(&format!(
        "smtps://relay.test?TLS_FINGERPRINT=SHA256:{}",
        colons.join(":").to_uppercase()
    ));
    assert_eq!(openssl.tls_fingerprint, Some(pin));
    assert_eq!(openssl.security, Security::ImplicitTls);
    let required = smtp(&format!(
        "smtp://h?starttls=required&tls_fingerprint=sha256:{PIN_HEX}"
    ));
    assert_eq!(required.tls_fingerprint, Some(pin));
    let err = ServerSpec::parse("smtp://h?tls_fingerprint=AB:CD").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("tls_fingerprint"), "{text}");
    assert!(text.contains("sha256:"), "{text}");
}

#[test]
fn passwords_never_show() {
    let spec = ServerSpec::parse("smtp://user:s3cret@h:587?starttls=required").unwrap();
    assert_eq!(spec.to_string(), "smtp://user:***@h:587?starttls=required");
    assert!(!format!("{spec:?}").contains("s3cret"));
    assert!(!format!("{:?}", Credentials::new("u", "s3cret")).contains("s3cret"));
}

#[test]
fn errors_never_quote_a_password() {
    // Each password holds a character that once split the spec early ('?', '#', '/', ':'),
    // so a piece of it ended up in a port, parameter or fragment error.
    for text in [
        "smtp://user:A1b2?C3d4=E5f6@h:25",
        "smtp://user:A1b2#C3d4E5f6@h:25",
        "smtp://user:A1b2/C3d4E5f6@h:99999",
        "smtp://user:A1b2:C3d4E5f6@h:x",
        "smtps://user:A1b2C3d4E5f6@h?starttls=off",
        "user:A1b2C3d4E5f6@h",
        "smtp://user:A1b2C3d4E5f6@bad host",
        "smtp://user:A1b2?C3d4=E5f6@h?starttls=maybe",
    ] {
        let shown = match ServerSpec::parse(text) {
            Ok(spec) => [spec.to_string(), format!("{spec:?}")],
            Err(err) => [err.to_string(), format!("{err:?}")],
        };
        for shown in shown {
            for piece in ["A1b2", "C3d4", "E5f6"] {
                assert!(!shown.contains(piece), "{text}: {shown}");
            }
        }
    }
    assert_eq!(
        ServerSpec::parse("smtp://user:pa?ss#w/o:rd@h:26")
            .unwrap()
            .to_string(),
        "smtp://user:***@h:26"
    );
}

#[test]
fn redact_hides_passwords_in_raw_text() {
    assert_eq!(redact("smtp://u:p@ss@h:25"), "smtp://u:***@h:25");
    assert_eq!(redact("smtp://u@h"), "smtp://u@h");
    assert_eq!(redact("u:secret@h"), "***@h");
    assert_eq!(
        redact("postgres://app:hunter2@127.0.0.1/db?sslmode=disable&password=x2"),
        "postgres://app:***@127.0.0.1/db?sslmode=disable&password=***"
    );
    assert_eq!(redact("program:/bin/cat a@b"), "program:/bin/cat a@b");
    assert_eq!(redact("h:25"), "h:25");
}

#[test]
fn display_parses_back() {
    for text in [
        "h:25",
        "smtp://[::1]:2525?starttls=off&timeout=30s",
        "smtps://h:465",
        "smtp://h?tls_fingerprint=sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        "smtps://h?timeout=1m&tls_fingerprint=sha256:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF",
        "program:/bin/cat -u 'a b'",
    ] {
        let spec = ServerSpec::parse(text).unwrap();
        assert_eq!(
            ServerSpec::parse(&spec.to_string()).unwrap(),
            spec,
            "{text}"
        );
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parse_never_panics(text in "\\PC{0,80}") {
            let _ = ServerSpec::parse(&text);
        }

        #[test]
        fn no_error_or_display_shows_the_password(
            user in "[a-z]{1,8}",
            password in "[ -~]{6,20}",
            tail in "(h|h:25|h:0|bad host|h?starttls=x|h#f|h/p)",
        ) {
            let text = format!("smtp://{user}:{password}@{tail}");
            let shown = match ServerSpec::parse(&text) {
                Ok(spec) => format!("{spec} {spec:?}"),
                Err(err) => format!("{err} {err:?}"),
            };
            // Only a password that is not a piece of the surrounding text can be looked for.
            prop_assume!(!format!("smtp://{user}:@{tail} server spec").contains(&password));
            prop_assert!(!shown.contains(&password), "{}", shown);
            prop_assert!(!redact(&text).contains(&password));
        }

        #[test]
        fn smtp_specs_round_trip(
            host in "[a-z]([a-z0-9-]{0,8}[a-z0-9])?(\\.[a-z][a-z0-9]{0,8}){0,3}",
            port in 1u16..,
            user in "[ -~]{1,12}",
            security in prop_oneof![
                Just(Security::NoTls),
                Just(Security::OpportunisticStartTls),
                Just(Security::RequiredStartTls),
                Just(Security::ImplicitTls),
            ],
            timeout in proptest::option::of(1u64..100_000),
            pin in proptest::option::of(proptest::array::uniform32(any::<u8>())),
        ) {
            // A pin needs TLS.
            let pin = pin.filter(|_| security != Security::NoTls);
            let spec = SmtpSpec {
                host,
                port,
                security,
                // Display shows the password as ***, so round-trip with that password.
                credentials: Some(Credentials::new(user, "***")),
                timeout: timeout.map(Duration::from_secs),
                tls_fingerprint: pin.map(Fingerprint::from_bytes),
            };
            let parsed = ServerSpec::parse(&spec.to_string()).unwrap();
            prop_assert_eq!(parsed, ServerSpec::Smtp(spec));
        }
    }
}
