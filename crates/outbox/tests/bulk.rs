//! `outbox bulk --recipients FILE.csv`: one merge message to every good row, bad rows
//! reported by line, batches, the summary, and what each recipient finally receives.

mod mail_support;

use mail_support::{Workdir, stderr, stdout};

fn bulk(work: &Workdir, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "bulk",
        "--recipients",
        "people.csv",
        "--from",
        "News <news@x.test>",
        "--subject",
        "Hello #First#",
        "--body",
        "Dear #First#, your code is #Code#. Sent to #email#.",
    ];
    args.extend_from_slice(extra);
    work.run(&args)
}

#[test]
fn good_rows_are_queued_as_one_merge_message_and_bad_rows_reported() {
    let work = Workdir::new();
    work.write(
        "people.csv",
        "email,First,Code\n\
         ann@y.test,Ann,A1\n\
         not-an-address,Nobody,X\n\
         \"Bob Lee <bob@z.test>\",\"Bob, Jr\",B2\n\
         carl@y.test,Carl\n\
         dee@y.test,Dee,D4\n",
    );
    let out = bulk(&work, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0].len(), 26, "an id: {text}");
    assert_eq!(lines[1], "queued 3, rejected 2");
    let err = stderr(&out);
    let err_lines: Vec<&str> = err.lines().collect();
    assert_eq!(err_lines.len(), 2, "{err}");
    assert!(
        err_lines[0].starts_with("people.csv:3: invalid address \"not-an-address\""),
        "{err}"
    );
    assert_eq!(
        err_lines[1],
        "people.csv:5: 2 fields, expected 3 (email,First,Code)"
    );

    let list = work.queue_list();
    assert_eq!(list.as_array().unwrap().len(), 1, "one message: {list}");
    assert_eq!(list[0]["recipients"], 3);
    let status = work.status(lines[0]);
    let mut addresses: Vec<String> = status["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap().to_string())
        .collect();
    addresses.sort();
    assert_eq!(addresses, ["ann@y.test", "bob@z.test", "dee@y.test"]);

    let mut received = work.deliver_all();
    assert_eq!(received.len(), 3, "one transaction per merge recipient");
    received.sort_by_key(|m| m.envelope.rcpt_to.clone());
    let bob = String::from_utf8(received[1].data.clone()).unwrap();
    assert_eq!(received[1].envelope.rcpt_to, ["bob@z.test"]);
    assert_eq!(received[1].envelope.mail_from, "news@x.test");
    assert!(bob.starts_with("To: undisclosed-recipients:;\r\n"), "{bob}");
    assert!(bob.contains("Subject: Hello Bob, Jr\r\n"), "{bob}");
    assert!(
        bob.contains("Dear Bob, Jr, your code is B2. Sent to bob@z.test."),
        "{bob}"
    );
    assert!(!bob.contains("Bcc"), "{bob}");
    let ann = String::from_utf8(received[0].data.clone()).unwrap();
    assert!(ann.contains("Dear Ann, your code is A1."), "{ann}");
}

#[test]
fn many_rows_in_several_batches_and_json_summary() {
    let work = Workdir::new();
    let mut csv = String::from("Code,email\n");
    for i in 0..2_500 {
        csv.push_str(&format!("{i},user{i}@y.test\n"));
    }
    work.write("people.csv", csv);
    let out = bulk(
        &work,
        &[
            "--batch-size",
            "1000",
            "--json",
            "--to",
            "Subscribers <list@x.test>",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["queued"], 2_500);
    assert_eq!(summary["rejected"], 0);
    let list = work.queue_list();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], summary["id"]);
    assert_eq!(list[0]["recipients"], 2_500);
}

#[test]
fn unusable_files_fail_with_one_line_and_queue_nothing() {
    let work = Workdir::new();
    let cases = [
        ("name,mail\nann,ann@y.test\n", "no `email` column"),
        ("email,First\nnope,A\n", "no valid rows (1 rejected)"),
        (
            "email,first name\nann@y.test,A\n",
            "\"first name\" is not a token name",
        ),
    ];
    for (csv, needle) in cases {
        work.write("people.csv", csv);
        let out = bulk(&work, &[]);
        assert!(!out.status.success(), "{csv}");
        let err = stderr(&out);
        let last = err.lines().last().unwrap_or_default();
        assert!(last.contains(needle), "{err}");
        assert_eq!(stdout(&out), "");
    }
    let out = work.run(&[
        "bulk",
        "--recipients",
        "missing.csv",
        "--from",
        "a@x.test",
        "--subject",
        "s",
        "--body",
        "b",
    ]);
    assert_eq!(stderr(&out).lines().count(), 1);
    assert!(stderr(&out).contains("missing.csv"), "{}", stderr(&out));
    let out = work.run(&[
        "bulk",
        "--recipients",
        "people.csv",
        "--subject",
        "no from",
        "--body",
        "b",
    ]);
    assert!(!out.status.success());
    assert_eq!(work.queue_list(), serde_json::json!([]));
}
