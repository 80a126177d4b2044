//! One webhook request: `POST` over HTTP/1.1, plain or TLS (verified with the
//! configured trust anchors), no redirects followed, everything within one timeout, and
//! at most [`MAX_RESPONSE_BODY`] bytes of the answer read.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Request, Uri, header};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// The most bytes of a response body read (kept for the error of a non-2xx answer).
pub const MAX_RESPONSE_BODY: usize = 4 * 1024;

/// The most characters of a response body shown in an error.
const SHOWN_BODY: usize = 200;

/// A webhook URL, checked once: `http` or `https`, with a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    uri: Uri,
    text: String,
    tls: bool,
    host: String,
    port: u16,
}

impl WebhookUrl {
    /// Parses an `http://` or `https://` URL with a host (and optional port, path and
    /// query). A fragment or user information is refused: neither is sent in a request.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.contains('#') {
            return Err("a URL fragment (#...) is never sent; remove it".into());
        }
        let uri: Uri = text.parse().map_err(|err| format!("not a URL ({err})"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            Some(other) => return Err(format!("scheme {other:?}: expected http or https")),
            None => return Err("expected http://HOST/... or https://HOST/...".into()),
        };
        let authority = uri.authority().ok_or("the URL has no host")?;
        if authority.as_str().contains('@') {
            return Err(
                "user information (user:password@) is not supported; sign with the secret".into(),
            );
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err("the URL has no host".into());
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(WebhookUrl {
            text: text.to_string(),
            host: host.to_string(),
            uri,
            tls,
            port,
        })
    }

    /// The URL as configured.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn path_and_query(&self) -> &str {
        self.uri.path_and_query().map_or("/", |p| p.as_str())
    }
}

/// What a request gave.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PostResult {
    /// A 2xx status.
    Accepted(u16),
    /// Another status, with the start of the body for the operator.
    Refused {
        /// The status.
        status: u16,
        /// The body's first characters (or nothing).
        body: String,
    },
    /// No answer: the connection, TLS, HTTP or the timeout failed.
    Error(String),
}

/// Sends one request: `body` with `headers`, within `timeout`.
pub async fn post(
    url: &WebhookUrl,
    tls: &Arc<rustls::ClientConfig>,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> PostResult {
    match tokio::time::timeout(timeout, post_within(url, tls, headers, body)).await {
        Ok(Ok(result)) => result,
        Ok(Err(error)) => PostResult::Error(error),
        Err(_) => PostResult::Error(format!("no answer within {}", humantime_like(timeout))),
    }
}

fn humantime_like(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

async fn post_within(
    url: &WebhookUrl,
    tls: &Arc<rustls::ClientConfig>,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
) -> Result<PostResult, String> {
    let tcp = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|err| format!("cannot connect to {}:{}: {err}", url.host, url.port))?;
    let _ = tcp.set_nodelay(true);
    if url.tls {
        let name = outbox_smtp::server_name(&url.host).map_err(|err| err.to_string())?;
        let mut config = (**tls).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let stream = TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|err| format!("TLS with {} failed: {err}", url.host))?;
        exchange(url, stream, headers, body).await
    } else {
        exchange(url, tcp, headers, body).await
    }
}

async fn exchange<S>(
    url: &WebhookUrl,
    stream: S,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
) -> Result<PostResult, String>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let http_error = |err: hyper::Error| format!("HTTP error from {}: {err}", url.host);
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(16 * 1024)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(http_error)?;
    // The connection task ends with the request (or the timeout drops it).
    let driver = tokio::spawn(connection);
    let host_header = match (url.tls, url.port) {
        (true, 443) | (false, 80) => url.host.clone(),
        _ if url.host.contains(':') => format!("[{}]:{}", url.host, url.port),
        _ => format!("{}:{}", url.host, url.port),
    };
    let mut request = Request::post(url.path_and_query())
        .header(header::HOST, host_header)
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::USER_AGENT,
            concat!("outbox/", env!("CARGO_PKG_VERSION")),
        )
        .header(header::CONNECTION, "close");
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|err| format!("building the request: {err}"))?;
    let response = sender.send_request(request).await.map_err(http_error)?;
    let status = response.status().as_u16();
    let result = if response.status().is_success() {
        PostResult::Accepted(status)
    } else {
        // Only the start of the body, and never more than the bound.
        let body = match Limited::new(response.into_body(), MAX_RESPONSE_BODY)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(_) => Bytes::new(),
        };
        let text: String = String::from_utf8_lossy(&body)
            .chars()
            .filter(|c| !c.is_control())
            .take(SHOWN_BODY)
            .collect();
        PostResult::Refused { status, body: text }
    };
    driver.abort();
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let url = WebhookUrl::parse("https://app.example.com/hooks/outbox?k=1").unwrap();
        assert!(url.tls);
        assert_eq!((url.host.as_str(), url.port), ("app.example.com", 443));
        assert_eq!(url.path_and_query(), "/hooks/outbox?k=1");
        let url = WebhookUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path_and_query()),
            ("127.0.0.1", 8080, "/")
        );
        let url = WebhookUrl::parse("http://[::1]:9/x").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", 9));
        for bad in [
            "ftp://x/",
            "app.example.com/hooks",
            "https://u:p@app.example.com/",
            "https://app.example.com/#frag",
            "not a url",
            "",
        ] {
            assert!(WebhookUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
