//! The program transport: pipe a message to a local program such as `/usr/sbin/sendmail -t`
//! (Allegro's `:program` mail server), without a shell.
//!
//! The program gets the message on its standard input with LF line ends (what `sendmail -t`
//! expects; SMTP always gets CRLF). The envelope is not put on its command line — the spec's
//! arguments are passed exactly as written — but it is in the environment as `OUTBOX_FROM` and
//! `OUTBOX_RECIPIENTS` (comma-separated) for programs that want it. A non-zero exit is an
//! error that carries what the program wrote to standard error.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::dot::to_lf_line_ends;
use crate::spec::ProgramSpec;

/// The most bytes of a program's standard error kept in an error.
const MAX_STDERR: usize = 4096;

/// Why piping a message to a program failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProgramError {
    /// The program could not be started (not found, not executable).
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Writing the message or waiting for the program failed.
    #[error("error talking to {program}: {source}")]
    Io {
        /// The program.
        program: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The program exited with a failure status.
    #[error("{program} exited with {status}{}", stderr_suffix(.stderr))]
    Failed {
        /// The program.
        program: String,
        /// The exit status, e.g. `exit status: 75`.
        status: String,
        /// The exit code, if it exited normally.
        code: Option<i32>,
        /// What it wrote on standard error (trimmed, at most 4 KiB).
        stderr: String,
    },
    /// The program did not finish in time; it was killed.
    #[error("{program} did not finish within {}", humantime::format_duration(*after))]
    Timeout {
        /// The program.
        program: String,
        /// The time limit.
        after: Duration,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

impl ProgramError {
    /// Whether trying again later may help: I/O trouble, a timeout, or sendmail's
    /// EX_TEMPFAIL (75) and friends from sysexits.h.
    pub fn is_transient(&self) -> bool {
        match self {
            ProgramError::Spawn { .. } => false,
            ProgramError::Io { .. } | ProgramError::Timeout { .. } => true,
            // EX_OSERR 71, EX_IOERR 74, EX_TEMPFAIL 75: conditions that pass.
            ProgramError::Failed { code, .. } => matches!(code, Some(71 | 74 | 75) | None),
        }
    }

    /// The opposite of [`ProgramError::is_transient`].
    pub fn is_permanent(&self) -> bool {
        !self.is_transient()
    }
}

/// Runs the program with the message on its standard input and waits for it to exit.
pub async fn send<R: AsRef<str>>(
    spec: &ProgramSpec,
    from: &str,
    recipients: &[R],
    message: &[u8],
) -> Result<(), ProgramError> {
    send_with_timeout(spec, from, recipients, message, None).await
}

/// [`send`] within `timeout` when one is given: the program is killed when it runs out.
pub async fn send_with_timeout<R: AsRef<str>>(
    spec: &ProgramSpec,
    from: &str,
    recipients: &[R],
    message: &[u8],
    timeout: Option<Duration>,
) -> Result<(), ProgramError> {
    let program = spec.program.clone();
    let recipients: Vec<&str> = recipients.iter().map(AsRef::as_ref).collect();
    let mut child = Command::new(&spec.program)
        .args(&spec.args)
        .env("OUTBOX_FROM", from)
        .env("OUTBOX_RECIPIENTS", recipients.join(","))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ProgramError::Spawn {
            program: program.clone(),
            source,
        })?;
    let mut stdin = child.stdin.take().ok_or_else(|| ProgramError::Io {
        program: program.clone(),
        source: std::io::Error::other("no stdin pipe"),
    })?;
    let body = to_lf_line_ends(message);
    let run = async {
        // Write stdin and collect stderr at the same time, so a program that reports a lot
        // before reading its input cannot deadlock us.
        let write = async {
            let result = stdin.write_all(&body).await;
            drop(stdin);
            match result {
                // A program may exit without reading everything; its status says how it went.
                Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => other,
            }
        };
        let (written, output) = tokio::join!(write, child.wait_with_output());
        let output = output?;
        written?;
        Ok::<_, std::io::Error>(output)
    };
    let output = match timeout {
        Some(limit) => match tokio::time::timeout(limit, run).await {
            Ok(output) => output,
            // Dropping the future drops the child, which kill_on_drop kills.
            Err(_) => {
                return Err(ProgramError::Timeout {
                    program,
                    after: limit,
                });
            }
        },
        None => run.await,
    }
    .map_err(|source| ProgramError::Io {
        program: program.clone(),
        source,
    })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut stderr = stderr.trim().to_string();
    if stderr.len() > MAX_STDERR {
        let mut cut = MAX_STDERR;
        while !stderr.is_char_boundary(cut) {
            cut -= 1;
        }
        stderr.truncate(cut);
    }
    Err(ProgramError::Failed {
        program,
        status: output.status.to_string(),
        code: output.status.code(),
        stderr,
    })
}
