//! Child processes that never outlive their test.

use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// A child process killed (by its pid) and reaped when dropped, also when a test fails.
pub struct ProcessGuard {
    child: Child,
    name: &'static str,
}

impl ProcessGuard {
    /// Guards `child`; `name` is what a failure to kill it is reported as.
    pub fn new(child: Child, name: &'static str) -> ProcessGuard {
        ProcessGuard { child, name }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child itself (to take its pipes, or signal it).
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Whether the process has already exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Its exit status if it has exited (`Child::try_wait`).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait on a child")
    }

    /// Sends SIGTERM (as `kill -TERM PID`, by pid) and waits up to 30 s for the exit; panics
    /// when the process ignores it (the test is about graceful shutdown then).
    pub fn terminate(&mut self) -> ExitStatus {
        if let Some(status) = self.try_wait() {
            return status;
        }
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {} failed", self.pid());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.try_wait() {
                return status;
            }
            assert!(Instant::now() < deadline, "{} ignored SIGTERM", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (up to 20 s) until something accepts TCP connections on 127.0.0.1:`port`;
    /// false when the process exits first or the time runs out.
    pub fn wait_listening(&mut self, port: u16) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.exited() {
                return false;
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        if let Err(err) = self.child.kill()
            && err.kind() != std::io::ErrorKind::InvalidInput
        {
            eprintln!(
                "could not kill {} (pid {}): {err}",
                self.name,
                self.child.id()
            );
        }
        let _ = self.child.wait();
    }
}
