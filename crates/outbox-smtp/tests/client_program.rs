//! The `program:` transport against real programs: LF line ends in, stderr out on failure.

use outbox_smtp::program::{self, ProgramError};
use outbox_smtp::{ProgramSpec, ServerSpec};

fn program(text: &str) -> ProgramSpec {
    match ServerSpec::parse(text).unwrap() {
        ServerSpec::Program(spec) => spec,
        other => panic!("not a program spec: {other}"),
    }
}

#[tokio::test]
async fn message_reaches_the_program_with_lf_line_ends() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("with space.eml");
    let spec = program(&format!("program:/usr/bin/tee '{}'", out.display()));
    program::send(
        &spec,
        "a@x.test",
        &["b@y.test"],
        b"Subject: x\r\n\r\n.line\r\nbare cr\rend",
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read(&out).unwrap(),
        b"Subject: x\n\n.line\nbare cr\nend"
    );
}

#[tokio::test]
async fn envelope_is_in_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("env");
    let spec = program(&format!(
        r#"program:/bin/sh -c 'echo "$OUTBOX_FROM $OUTBOX_RECIPIENTS" > "$0"; cat > /dev/null' '{}'"#,
        out.display()
    ));
    program::send(&spec, "a@x.test", &["b@y.test", "c@y.test"], b"x")
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "a@x.test b@y.test,c@y.test\n"
    );
}

#[tokio::test]
async fn non_zero_exit_carries_stderr_and_is_classified() {
    let spec = program("program:/bin/sh -c 'cat > /dev/null; echo \"no such user\" >&2; exit 67'");
    let err = program::send(&spec, "a@x.test", &["b@y.test"], b"x")
        .await
        .unwrap_err();
    match &err {
        ProgramError::Failed { code, stderr, .. } => {
            assert_eq!(*code, Some(67));
            assert_eq!(stderr, "no such user");
        }
        other => panic!("{other}"),
    }
    assert!(err.is_permanent());
    assert!(err.to_string().contains("no such user"), "{err}");

    let spec = program("program:/bin/sh -c 'echo busy >&2; exit 75'");
    let err = program::send(&spec, "a@x.test", &["b@y.test"], b"x")
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn missing_program_is_a_spawn_error() {
    let spec = program("program:/nonexistent/sendmail -t");
    let err = program::send(&spec, "a@x.test", &["b@y.test"], b"x")
        .await
        .unwrap_err();
    assert!(matches!(err, ProgramError::Spawn { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/sendmail"), "{err}");
}

#[tokio::test]
async fn a_program_that_hangs_is_killed_at_the_timeout() {
    let spec = program("program:/bin/sleep 30");
    let limit = std::time::Duration::from_millis(200);
    let err = program::send_with_timeout(&spec, "a@x.test", &["b@y.test"], b"x", Some(limit))
        .await
        .unwrap_err();
    assert!(matches!(err, ProgramError::Timeout { .. }), "{err}");
}
