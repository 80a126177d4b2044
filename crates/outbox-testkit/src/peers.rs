//! Real SMTP peers for the client's interop tests: Postfix's smtp-sink and aiosmtpd, on
//! loopback ports. Every process is killed by pid when its guard drops, also when a test
//! fails. A peer that cannot start fails the test loudly.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::ProcessGuard;

/// A running smtp-sink.
pub struct SmtpSink {
    /// The process; dropping it kills smtp-sink.
    pub guard: ProcessGuard,
    /// Where it listens on 127.0.0.1.
    pub port: u16,
}

/// Starts Postfix's smtp-sink on 127.0.0.1 with extra flags (e.g. `-d DIR`, `-c`), trying a
/// few ports in case another test takes the one picked. Panics when it cannot start.
pub fn smtp_sink(extra: &[&str]) -> SmtpSink {
    let program = ["/usr/sbin/smtp-sink", "/usr/bin/smtp-sink"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("smtp-sink is not installed: run scripts/install-peers.sh");
    for _ in 0..10 {
        let port = crate::free_tcp_port();
        let child = Command::new(program)
            .args(["-u", "nobody"])
            .args(extra)
            .arg(format!("127.0.0.1:{port}"))
            .arg("1024")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn smtp-sink");
        let mut guard = ProcessGuard::new(child, "smtp-sink");
        if guard.wait_listening(port) {
            return SmtpSink { guard, port };
        }
    }
    panic!("smtp-sink did not start on any port");
}

/// A directory smtp-sink (running as nobody) may write its `-d` dumps into.
pub fn dump_dir(parent: &Path) -> PathBuf {
    let dir = parent.join("sink");
    std::fs::create_dir_all(&dir).unwrap();
    set_mode(&dir, 0o777);
    set_mode(parent, 0o755);
    dir
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The files smtp-sink or aiosmtpd wrote into `dir`, read whole, sorted by name.
pub fn dumped_messages(dir: &Path) -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// How to run aiosmtpd.
#[derive(Default)]
pub struct AiosmtpdOptions<'a> {
    /// A directory to write each message into (one file each).
    pub out: Option<&'a Path>,
    /// Require AUTH (PLAIN / LOGIN) with this user name and password.
    pub user: Option<(&'a str, &'a str)>,
    /// Offer STARTTLS (or, with `implicit_tls`, speak TLS at once) with this CA's server
    /// certificate.
    pub tls: Option<&'a crate::ca::TestCa>,
    /// TLS from the first byte (port 465 style) instead of STARTTLS.
    pub implicit_tls: bool,
}

/// A running aiosmtpd.
pub struct Aiosmtpd {
    /// The process; dropping it kills aiosmtpd.
    pub guard: ProcessGuard,
    /// Where it listens on 127.0.0.1.
    pub port: u16,
}

/// Starts `peers/aiosmtpd_server.py` (in this crate), which picks its own port and prints it.
pub fn aiosmtpd(options: AiosmtpdOptions<'_>) -> Aiosmtpd {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/aiosmtpd_server.py");
    let mut command = Command::new("python3");
    command.arg(&script);
    if let Some(out) = options.out {
        command.arg("--out").arg(out);
    }
    if let Some((user, password)) = options.user {
        command.args(["--user", user, "--password", password]);
    }
    if let Some(ca) = options.tls {
        command.arg("--cert").arg(&ca.server_cert);
        command.arg("--key").arg(&ca.server_key);
    }
    if options.implicit_tls {
        command.arg("--implicit-tls");
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect(
            "spawn python3 aiosmtpd_server.py (is aiosmtpd installed? scripts/install-peers.sh)",
        );
    let mut guard = ProcessGuard::new(child, "aiosmtpd");
    let stdout = guard.child_mut().stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let port: u16 = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("aiosmtpd did not start: {line:?}"));
    Aiosmtpd { guard, port }
}
