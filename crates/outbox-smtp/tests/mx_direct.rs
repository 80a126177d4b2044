//! Direct delivery across two MX hosts (dnsmasq on loopback for DNS, in-process servers
//! on 127.0.0.2 and 127.0.0.3 on the same port): the session opens with the next host on a
//! refused connection, a 421 greeting or a failed EHLO; once open, its replies are the
//! answer (a 421 to MAIL is not taken to the next host).

use outbox_smtp::ClientConfig;
use outbox_smtp::direct::{DirectDelivery, DirectError};
use outbox_smtp::server::{Fault, Server, Stage};
use outbox_testkit::dnsmasq::Dnsmasq;

/// Two servers on the same port at 127.0.0.2 and 127.0.0.3 (retrying on a port clash).
async fn two_mx_servers(primary: Option<Fault>) -> (Option<Server>, Server) {
    for _ in 0..20 {
        let secondary = Server::builder()
            .hostname("mx2.a.test")
            .bind("127.0.0.3:0")
            .await
            .unwrap();
        let port = secondary.local_addr().port();
        let Some(fault) = primary.clone() else {
            return (None, secondary);
        };
        match Server::builder()
            .hostname("mx1.a.test")
            .fault(fault)
            .bind(&format!("127.0.0.2:{port}"))
            .await
        {
            Ok(first) => return (Some(first), secondary),
            Err(_) => continue,
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

fn a_test_dns() -> Dnsmasq {
    Dnsmasq::start(&[
        "--mx-host=a.test,mx1.a.test,10",
        "--mx-host=a.test,mx2.a.test,20",
        "--host-record=mx1.a.test,127.0.0.2",
        "--host-record=mx2.a.test,127.0.0.3",
    ])
}

/// Opens a session for a.test (its MX hosts in order) and sends one message over it.
async fn deliver_to_a_test(
    primary: Option<Fault>,
) -> (
    Option<Server>,
    Server,
    Result<outbox_smtp::SendReport, String>,
) {
    let dns = a_test_dns();
    let resolver = dns.resolver();
    let (first, second) = two_mx_servers(primary).await;
    let direct = DirectDelivery::new(second.local_addr().port(), ClientConfig::new("outbox.test"));
    let result = match direct.connect(&resolver, "a.test").await {
        Ok(mut session) => session
            .client
            .send_to("s@x.test", &["r@a.test"], b"Subject: t\r\n\r\nhi\r\n")
            .await
            .map_err(|err| err.to_string()),
        Err(err) => Err(err.to_string()),
    };
    (first, second, result)
}

#[tokio::test]
async fn falls_back_when_the_primary_refuses_connections() {
    let (_, second, result) = deliver_to_a_test(None).await;
    assert!(result.unwrap().all_sent());
    assert_eq!(
        second.memory_sink().unwrap().messages()[0].envelope.rcpt_to,
        ["r@a.test"]
    );
}

#[tokio::test]
async fn falls_back_on_a_421_greeting() {
    let (first, second, result) =
        deliver_to_a_test(Some(Fault::reply(Stage::Connect, 421, "4.3.2 busy"))).await;
    assert!(result.unwrap().all_sent());
    assert_eq!(first.unwrap().stats().connections_accepted, 1);
    assert_eq!(second.memory_sink().unwrap().len(), 1);
}

#[tokio::test]
async fn falls_back_on_a_refused_ehlo() {
    let (first, second, result) =
        deliver_to_a_test(Some(Fault::reply(Stage::Ehlo, 554, "5.7.1 go away"))).await;
    assert!(result.unwrap().all_sent());
    assert_eq!(first.unwrap().stats().connections_accepted, 1);
    assert_eq!(second.memory_sink().unwrap().len(), 1);
}

#[tokio::test]
async fn a_421_to_mail_is_the_answer_not_a_fallback() {
    let (first, second, result) =
        deliver_to_a_test(Some(Fault::reply(Stage::Mail, 421, "4.7.0 slow down"))).await;
    let error = result.unwrap_err();
    assert!(error.contains("421"), "{error}");
    assert_eq!(first.unwrap().stats().connections_accepted, 1);
    assert_eq!(second.stats().connections_accepted, 0);
}

#[tokio::test]
async fn a_5xx_rcpt_is_the_answer_not_a_fallback() {
    let (first, second, result) =
        deliver_to_a_test(Some(Fault::reply(Stage::Rcpt, 550, "5.1.1 no such user"))).await;
    let delivery = result.unwrap();
    assert!(!delivery.all_sent());
    assert_eq!(delivery.recipients[0].outcome.reply().code, 550);
    assert_eq!(first.unwrap().stats().connections_accepted, 1);
    assert_eq!(second.stats().connections_accepted, 0);
}

#[tokio::test]
async fn every_host_down_is_transient() {
    let dns = a_test_dns();
    let resolver = dns.resolver();
    let port = outbox_testkit::free_tcp_port();
    let direct = DirectDelivery::new(port, ClientConfig::new("outbox.test"));
    let Err(error) = direct.connect(&resolver, "a.test").await else {
        panic!("no host is listening");
    };
    assert!(error.is_transient());
    let DirectError::Unreachable { attempts, .. } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].host, "mx1.a.test");
    assert_eq!(attempts[1].host, "mx2.a.test");
}
