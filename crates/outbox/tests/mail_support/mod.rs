//! Shared by the listener, sendmail and bulk tests: the real `outbox` binary in a temp dir
//! (its own SQLite queue), `outbox serve` with its log kept, and delivery of that queue into
//! an in-process SMTP server so a test can read the exact bytes that were stored.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outbox_smtp::server::{ReceivedMessage, Server};
pub use outbox_testkit::ProcessGuard;

/// The path of the binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_outbox"))
}

/// A temp dir holding the queue (`./outbox.db`) and any config, files and links.
pub struct Workdir {
    pub dir: tempfile::TempDir,
}

impl Workdir {
    pub fn new() -> Workdir {
        Workdir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file in the dir and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path().join(name);
        std::fs::write(&path, contents).expect("write file");
        path
    }

    /// A command running `program` in the dir with a clean environment for outbox.
    pub fn command_for(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command.current_dir(self.path());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("OUTBOX_") {
                command.env_remove(key);
            }
        }
        command.env_remove("RUST_LOG").env("NO_COLOR", "1");
        command
    }

    /// `outbox ARGS...` in the dir.
    pub fn outbox(&self, args: &[&str]) -> Command {
        let mut command = self.command_for(&binary());
        command.args(args);
        command
    }

    /// Runs `outbox ARGS...` and returns its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.outbox(args).output().expect("run outbox")
    }

    /// `outbox --json queue list` as JSON.
    pub fn queue_list(&self) -> serde_json::Value {
        let out = self.run(&["--json", "queue", "list"]);
        assert!(out.status.success(), "queue list: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).expect("queue list JSON")
    }

    /// `outbox --json status ID` as JSON.
    pub fn status(&self, id: &str) -> serde_json::Value {
        let out = self.run(&["--json", "status", id]);
        assert!(out.status.success(), "status: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).expect("status JSON")
    }

    /// Delivers the whole queue (`outbox deliver --until-empty`) into an in-process SMTP
    /// server and returns what it received.
    pub fn deliver_all(&self) -> Vec<ReceivedMessage> {
        let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
        runtime.block_on(async {
            let server = Server::builder().bind("127.0.0.1:0").await.expect("bind");
            let relay = format!("smtp://{}?starttls=off", server.local_addr());
            let mut command =
                tokio::process::Command::from(self.outbox(&["deliver", "--until-empty"]));
            command
                .env("OUTBOX_DELIVERY_RELAY", relay)
                .kill_on_drop(true);
            let out = tokio::time::timeout(Duration::from_secs(120), command.output())
                .await
                .expect("deliver --until-empty finishes")
                .expect("run deliver");
            assert!(out.status.success(), "deliver: {}", stderr(&out));
            let messages = server.memory_sink().expect("memory sink").messages();
            server.shutdown().await;
            messages
        })
    }
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A running `outbox serve` whose every log line is kept.
pub struct Serve {
    pub guard: ProcessGuard,
    pub address: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    /// Starts `outbox serve` in `work` with `RUST_LOG` set to `log_level`.
    pub fn start(work: &Workdir, log_level: &str) -> Serve {
        let child = work
            .outbox(&["serve"])
            .env("RUST_LOG", log_level)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start outbox serve");
        let mut guard = ProcessGuard::new(child, "outbox");
        let stderr = guard.child_mut().stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (sender, receiver) = std::sync::mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && line.contains("SMTP submission listener listening") {
                    let address = line
                        .split_whitespace()
                        .find_map(|word| word.strip_prefix("address="))
                        .map(str::to_string);
                    let _ = sender.send(Ok(address.unwrap_or_default()));
                    sent = true;
                } else if !sent && line.contains("ERROR") {
                    let _ = sender.send(Err(line.clone()));
                    sent = true;
                }
                // Keep draining so the child never blocks on a full pipe.
                lines.lock().unwrap().push(line);
            }
            if !sent {
                let _ = sender.send(Err("outbox serve exited before listening".to_string()));
            }
        });
        let address = receiver
            .recv_timeout(Duration::from_secs(60))
            .expect("outbox serve starts the SMTP listener in time")
            .expect("outbox serve starts");
        Serve {
            guard,
            address: address.parse().expect("listener address in the log"),
            log,
        }
    }

    pub fn host(&self) -> String {
        self.address.ip().to_string()
    }

    pub fn port(&self) -> String {
        self.address.port().to_string()
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Every log line so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The resident set size of the serve process in kB (`VmRSS` in /proc/PID/status).
    pub fn rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc/PID/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.split_whitespace().next()?.parse().ok())
            .expect("VmRSS line")
    }

    /// Stops serve with SIGTERM and waits, so its last log lines are read.
    pub fn stop(&mut self) {
        self.guard.terminate();
        // The reader thread ends at EOF; give it a moment to store the last lines.
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `outbox serve` with the config file `outbox.toml` in the dir; returns the guard and the
/// SMTP listener's address, read from its log line.
pub fn serve(work: &Workdir) -> (ProcessGuard, String) {
    let serve = Serve::start(work, "info");
    (serve.guard, serve.address.to_string())
}

/// Runs a Python 3 script with arguments; returns its output.
pub fn python(script: &str, args: &[&str]) -> Output {
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 runs")
}

/// Polls `check` until it returns true or 60 s pass (for work another process does).
pub fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
