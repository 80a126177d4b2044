//! `outbox deliver` and `outbox serve` stop on SIGTERM/SIGINT even while a server stalls:
//! the first signal cancels connection setup (a server that accepts and never greets), a
//! second one ends the process at once (a server that never answers the end of data). What
//! was not delivered stays queued: never lost, never marked sent.
//!
//! Timings are not asserted: each exit is polled for up to 20 s, far below the stalled
//! server's 10-minute timeouts, so the fault this catches is "does not stop at all".

mod mail_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mail_support::{ProcessGuard, Workdir, stderr};

/// A server that accepts connections and never says a word.
fn silent_server() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().unwrap().to_string();
    (listener, address)
}

/// A server that greets and takes a message, then never answers the end of data; the
/// receiver hears when the end of data has arrived.
fn stalls_after_data() -> (String, mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().unwrap().to_string();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let sender = sender.clone();
            std::thread::spawn(move || {
                let _ = stream.write_all(b"220 stall.test ESMTP\r\n");
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                let mut in_data = false;
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    let reply: &[u8] = if in_data {
                        if line == ".\r\n" {
                            let _ = sender.send(());
                            // Never answer: keep reading until the client goes away.
                            let _ = reader.read_to_end(&mut Vec::new());
                            return;
                        }
                        b""
                    } else if line.starts_with("EHLO") {
                        b"250 stall.test\r\n"
                    } else if line.starts_with("DATA") {
                        in_data = true;
                        b"354 go on\r\n"
                    } else {
                        b"250 ok\r\n"
                    };
                    let _ = stream.write_all(reply);
                    line.clear();
                }
            });
        }
    });
    (address, receiver)
}

/// One queued message to `rcpt@stall.test`; returns its id.
fn queue_one(work: &Workdir) -> String {
    let out = work.run(&[
        "send",
        "--from",
        "app@example.com",
        "--to",
        "rcpt@stall.test",
        "--subject",
        "stall",
        "--body",
        "hello",
    ]);
    assert!(out.status.success(), "send: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Starts `outbox ARGS` with the relay and long timeouts; returns the guard and a channel
/// that receives every stderr line.
fn start(work: &Workdir, relay: &str, args: &[&str]) -> (ProcessGuard, mpsc::Receiver<String>) {
    let child = work
        .outbox(args)
        .env(
            "OUTBOX_DELIVERY_RELAY",
            format!("smtp://{relay}?starttls=off"),
        )
        .env("OUTBOX_DELIVERY_CONNECT_TIMEOUT", "10m")
        .env("OUTBOX_DELIVERY_COMMAND_TIMEOUT", "10m")
        .env("OUTBOX_HTTP_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start outbox");
    let mut guard = ProcessGuard::new(child, "outbox");
    let pipe = guard.child_mut().stderr.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    (guard, receiver)
}

/// Waits (up to 60 s) for a stderr line containing `text`.
fn wait_for_line(lines: &mpsc::Receiver<String>, text: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(text);
                seen.push(line);
                if found {
                    return seen;
                }
            }
            Err(_) => panic!("no line with {text:?}; stderr so far: {seen:#?}"),
        }
    }
}

fn signal(guard: &ProcessGuard, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &guard.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name}");
}

/// Polls for the exit for up to 20 s.
fn exits(guard: &mut ProcessGuard, what: &str) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = guard.try_wait() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: still running 20 s after the signal"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The message is still queued and its recipient in one of `states`: nothing sent, nothing
/// failed.
fn still_queued(work: &Workdir, id: &str, states: &[&str]) {
    let status = work.status(id);
    assert_eq!(status["status"], "queued", "{status}");
    let recipients = status["recipients"].as_array().expect("recipients");
    assert_eq!(recipients.len(), 1, "{status}");
    for recipient in recipients {
        let state = recipient["state"].as_str().unwrap_or_default();
        assert!(
            states.contains(&state),
            "recipient state {state}, expected {states:?}: {status}"
        );
    }
}

fn first_signal_cancels_a_stalled_greeting(args: &[&str], signal_name: &str) {
    let work = Workdir::new();
    let id = queue_one(&work);
    let (server, address) = silent_server();
    let (mut guard, lines) = start(&work, &address, args);
    // The connection is open and waiting for a greeting that never comes.
    let _connection = server.accept().expect("outbox connects");
    signal(&guard, signal_name);
    let status = exits(&mut guard, &format!("{args:?} after one SIG{signal_name}"));
    assert!(status.success(), "{args:?}: {status}");
    drop(lines);
    // The claim was given back without an attempt: due again at once, attempts not spent.
    still_queued(&work, &id, &["queued"]);
    assert_eq!(work.status(&id)["recipients"][0]["attempts"], 0);
}

#[test]
fn deliver_stops_on_sigterm_while_the_server_never_greets() {
    first_signal_cancels_a_stalled_greeting(&["deliver"], "TERM");
}

#[test]
fn deliver_stops_on_sigint_while_the_server_never_greets() {
    first_signal_cancels_a_stalled_greeting(&["deliver"], "INT");
}

#[test]
fn serve_stops_on_sigterm_while_the_server_never_greets() {
    first_signal_cancels_a_stalled_greeting(&["serve"], "TERM");
}

fn second_signal_forces_the_exit(args: &[&str]) {
    let work = Workdir::new();
    let id = queue_one(&work);
    let (address, data_sent) = stalls_after_data();
    let (mut guard, lines) = start(&work, &address, args);
    // Once the end of data is sent, a stop waits for its reply (up to the command
    // timeout) ...
    data_sent
        .recv_timeout(Duration::from_secs(60))
        .expect("outbox sends the message");
    signal(&guard, "TERM");
    wait_for_line(&lines, "stopping");
    // ... and a second signal ends it at once.
    signal(&guard, "TERM");
    let status = exits(&mut guard, &format!("{args:?} after a second SIGTERM"));
    assert_eq!(status.code(), Some(130), "{args:?}: {status}");
    // Still claimed ("sending") until its heartbeat expires, then due again.
    still_queued(&work, &id, &["sending", "queued"]);
}

#[test]
fn deliver_exits_on_a_second_signal_while_data_is_unanswered() {
    second_signal_forces_the_exit(&["deliver"]);
}

#[test]
fn serve_exits_on_a_second_signal_while_data_is_unanswered() {
    second_signal_forces_the_exit(&["serve"]);
}

/// `deliver` killed with -9 while the end of data is unanswered, then started again on the
/// same machine: the new process resumes the dead one's recipient on its first heartbeat
/// (the dead pid is gone), not after the lease. The lease here is 10 minutes and the
/// restarted `deliver --until-empty` is given 60 s: only the prompt resumption passes.
#[test]
fn a_deliver_restarted_after_kill_9_resumes_at_once() {
    let work = Workdir::new();
    let id = queue_one(&work);
    let (address, data_sent) = stalls_after_data();
    let (mut guard, _lines) = {
        let mut command = work.outbox(&["deliver"]);
        command
            .env(
                "OUTBOX_DELIVERY_RELAY",
                format!("smtp://{address}?starttls=off"),
            )
            .env("OUTBOX_DELIVERY_LEASE", "10m")
            .env("OUTBOX_DELIVERY_COMMAND_TIMEOUT", "10m")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command.spawn().expect("start outbox deliver");
        (ProcessGuard::new(child, "outbox"), ())
    };
    data_sent
        .recv_timeout(Duration::from_secs(60))
        .expect("outbox sends the message");
    signal(&guard, "KILL");
    exits(&mut guard, "deliver after SIGKILL");
    still_queued(&work, &id, &["sending"]);

    // Restarted against a relay that answers: delivered, long before the lease is up.
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let server = outbox_smtp::server::Server::builder()
            .bind("127.0.0.1:0")
            .await
            .expect("bind");
        let relay = format!("smtp://{}?starttls=off", server.local_addr());
        let mut command = tokio::process::Command::from(work.outbox(&["deliver", "--until-empty"]));
        command
            .env("OUTBOX_DELIVERY_RELAY", relay)
            .env("OUTBOX_DELIVERY_LEASE", "10m")
            .kill_on_drop(true);
        let out = tokio::time::timeout(Duration::from_secs(60), command.output())
            .await
            .expect("the restarted deliver resumes the dead one's recipient at once")
            .expect("run deliver");
        assert!(out.status.success(), "deliver: {}", stderr(&out));
        assert_eq!(
            server.memory_sink().expect("memory sink").messages().len(),
            1
        );
        server.shutdown().await;
    });
    let status = work.status(&id);
    assert_eq!(status["status"], "sent", "{status}");
}
