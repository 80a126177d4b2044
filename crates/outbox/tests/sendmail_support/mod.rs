//! Shared by the sendmail tests: the binary run through a link named `sendmail` (as cron,
//! PHP and git run /usr/sbin/sendmail), with a message on stdin.

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Output, Stdio};

use crate::mail_support::{self, Workdir, stderr, stdout};

/// Runs `sendmail ARGS` in the work dir with `input` on stdin.
pub fn sendmail(work: &Workdir, args: &[&str], input: impl AsRef<[u8]>) -> Output {
    let program = link_once(work);
    let mut child = work
        .command_for(&program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sendmail");
    // A sendmail that stops reading (a lone ".", a refusal) may close stdin early: ignore EPIPE.
    let _ = child.stdin.take().unwrap().write_all(input.as_ref());
    child.wait_with_output().expect("sendmail output")
}

/// A `sendmail` symlink to the binary in the work dir, made on first use.
pub fn link_once(work: &Workdir) -> PathBuf {
    let path = work.path().join("sendmail");
    if !path.exists() {
        std::os::unix::fs::symlink(mail_support::binary(), &path).expect("symlink");
    }
    path
}

pub fn assert_quiet_success(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        stderr(out)
    );
    assert_eq!(stdout(out), "");
    assert_eq!(stderr(out), "");
}

/// Exit `code`, one line on stderr that mentions `needle`, nothing on stdout.
pub fn assert_fails(out: &Output, code: i32, needle: &str) {
    assert_eq!(out.status.code(), Some(code), "{}", stderr(out));
    let err = stderr(out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "{err:?} should mention {needle:?}");
    assert_eq!(stdout(out), "");
}

/// The machine's host name: the default `[sendmail] domain`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// The user running the tests, by uid (`id -un`): the default sender's local part.
pub fn user() -> String {
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .expect("id -un");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The received text as a string, every line end checked to be CRLF.
pub fn text_of(data: &[u8]) -> String {
    let text = String::from_utf8(data.to_vec()).expect("UTF-8 message");
    assert!(
        !text.replace("\r\n", "").contains('\n'),
        "every line end is CRLF: {text:?}"
    );
    text
}
