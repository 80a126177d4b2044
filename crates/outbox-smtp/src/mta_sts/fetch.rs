//! Fetching a policy over HTTPS (RFC 8461 §3.3): `GET /.well-known/mta-sts.txt` from
//! `mta-sts.DOMAIN`, with a certificate valid for that name, no redirects, only `200`,
//! `text/plain`, at most 64 KiB, all within one timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper::body::Bytes;
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::policy::{Policy, PolicyError, quoted};
use crate::mx::{MxError, MxResolver};

/// The path of the policy file on the `mta-sts.DOMAIN` host.
pub const POLICY_PATH: &str = "/.well-known/mta-sts.txt";

/// The largest policy body accepted (RFC 8461 §3.3: "senders SHOULD impose a limit").
pub const MAX_POLICY_SIZE: usize = 64 * 1024;

/// The largest response head (status line and headers) read; hyper's minimum.
const MAX_HEAD_SIZE: usize = 8 * 1024;

/// The most addresses of `mta-sts.DOMAIN` tried in turn when connecting.
const MAX_ADDRESSES: usize = 4;

/// Why a policy could not be fetched. Each one means "no new policy": the caller falls
/// back to a cached one, or delivers without MTA-STS (RFC 8461 §5.1).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The policy host's addresses could not be found.
    #[error("cannot find the address of {host}: {source}")]
    Resolve {
        /// `mta-sts.DOMAIN`.
        host: String,
        /// The DNS answer.
        source: MxError,
    },
    /// No address of the policy host accepted a connection.
    #[error("cannot connect to {host} ({addr}): {source}")]
    Connect {
        /// `mta-sts.DOMAIN`.
        host: String,
        /// The last address tried.
        addr: SocketAddr,
        /// The connection error.
        source: std::io::Error,
    },
    /// The TLS handshake failed, a certificate not valid for the host included.
    #[error("TLS with {host} failed: {message}")]
    Tls {
        /// `mta-sts.DOMAIN`.
        host: String,
        /// The TLS error.
        message: String,
    },
    /// The HTTP exchange failed (malformed response, connection closed early).
    #[error("HTTP error from {host}: {message}")]
    Http {
        /// `mta-sts.DOMAIN`.
        host: String,
        /// hyper's description.
        message: String,
    },
    /// The server answered with a redirect, which must not be followed (RFC 8461 §3.3).
    #[error(
        "{host} answered HTTP {status} (redirect to {location}); redirects are not followed (RFC 8461 §3.3)"
    )]
    Redirect {
        /// `mta-sts.DOMAIN`.
        host: String,
        /// The 3xx status.
        status: u16,
        /// The `Location` header, quoted and shortened (`""` when absent).
        location: String,
    },
    /// The server answered with a status other than 200 or a redirect.
    #[error("{host} answered HTTP {status}, not 200")]
    Status {
        /// `mta-sts.DOMAIN`.
        host: String,
        /// The status code.
        status: u16,
    },
    /// The body is not `text/plain` (RFC 8461 §3.2).
    #[error("{host} sent the policy as {found}, not text/plain")]
    ContentType {
        /// `mta-sts.DOMAIN`.
        host: String,
        /// The `Content-Type` header, quoted and shortened, or "no Content-Type".
        found: String,
    },
    /// The body is over [`MAX_POLICY_SIZE`].
    #[error("the policy from {host} is over {limit} bytes")]
    TooLarge {
        /// `mta-sts.DOMAIN`.
        host: String,
        /// The limit.
        limit: usize,
    },
    /// The body is not UTF-8 text.
    #[error("the policy from {host} is not UTF-8 text")]
    NotText {
        /// `mta-sts.DOMAIN`.
        host: String,
    },
    /// The body is not a valid policy.
    #[error("invalid policy from {host}: {source}")]
    Policy {
        /// `mta-sts.DOMAIN`.
        host: String,
        /// What is wrong with it.
        source: PolicyError,
    },
    /// The whole fetch took longer than the timeout.
    #[error("fetching the policy from {host} took over {}", humantime::format_duration(*.after))]
    Timeout {
        /// `mta-sts.DOMAIN`.
        host: String,
        /// The timeout.
        after: Duration,
    },
}

/// Fetches policies: TLS settings, the HTTPS port and the timeout.
pub(super) struct PolicyFetcher {
    pub(super) connector: TlsConnector,
    pub(super) port: u16,
    pub(super) timeout: Duration,
}

impl PolicyFetcher {
    /// A fetcher trusting what `tls` trusts, speaking HTTP/1.1 (ALPN).
    pub(super) fn new(tls: &rustls::ClientConfig, port: u16, timeout: Duration) -> Self {
        let mut config = tls.clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        PolicyFetcher {
            connector: TlsConnector::from(Arc::new(config)),
            port,
            timeout,
        }
    }

    /// Fetches and parses the policy of `domain` (already normalized), whose TXT record
    /// gave `id`; the policy host's address comes from `resolver`.
    pub(super) async fn fetch(
        &self,
        resolver: &dyn MxResolver,
        domain: &str,
        id: &str,
    ) -> Result<Policy, FetchError> {
        let host = format!("mta-sts.{domain}");
        match tokio::time::timeout(self.timeout, self.fetch_from(resolver, &host, id)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout {
                host,
                after: self.timeout,
            }),
        }
    }

    async fn fetch_from(
        &self,
        resolver: &dyn MxResolver,
        host: &str,
        id: &str,
    ) -> Result<Policy, FetchError> {
        let addresses =
            resolver
                .host_addresses(host)
                .await
                .map_err(|source| FetchError::Resolve {
                    host: host.to_string(),
                    source,
                })?;
        let mut tcp = None;
        let mut last_error = None;
        for ip in addresses.into_iter().take(MAX_ADDRESSES) {
            let addr = SocketAddr::new(ip, self.port);
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    tcp = Some(stream);
                    break;
                }
                Err(source) => last_error = Some((addr, source)),
            }
        }
        let tcp = match (tcp, last_error) {
            (Some(stream), _) => stream,
            (None, Some((addr, source))) => {
                return Err(FetchError::Connect {
                    host: host.to_string(),
                    addr,
                    source,
                });
            }
            (None, None) => {
                return Err(FetchError::Resolve {
                    host: host.to_string(),
                    source: MxError::NoAddress {
                        host: host.to_string(),
                    },
                });
            }
        };
        let tls_error = |message: String| FetchError::Tls {
            host: host.to_string(),
            message,
        };
        let name = crate::tls::server_name(host).map_err(|e| tls_error(e.to_string()))?;
        let stream = self
            .connector
            .connect(name, tcp)
            .await
            .map_err(|e| tls_error(e.to_string()))?;
        let body = get_policy(stream, host, self.port).await?;
        let text = std::str::from_utf8(&body).map_err(|_| FetchError::NotText {
            host: host.to_string(),
        })?;
        Policy::parse(id, text).map_err(|source| FetchError::Policy {
            host: host.to_string(),
            source,
        })
    }
}

/// One HTTP/1.1 `GET` of [`POLICY_PATH`] on `stream`; returns the body of a `200
/// text/plain` answer of at most [`MAX_POLICY_SIZE`] bytes (Content-Length or chunked).
async fn get_policy<S>(stream: S, host: &str, port: u16) -> Result<Vec<u8>, FetchError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http_error = |error: hyper::Error| FetchError::Http {
        host: host.to_string(),
        message: error.to_string(),
    };
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_HEAD_SIZE)
        .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(http_error)?;
    let authority = if port == 443 {
        host.to_string()
    } else {
        format!("{host}:{port}")
    };
    let request = Request::get(POLICY_PATH)
        .header(header::HOST, authority)
        .header(header::USER_AGENT, "outbox")
        .header(header::CONNECTION, "close")
        .body(Empty::new())
        .map_err(|e| FetchError::Http {
            host: host.to_string(),
            message: e.to_string(),
        })?;
    let exchange = async move {
        let response = sender.send_request(request).await.map_err(http_error)?;
        check_head(&response, host)?;
        match Limited::new(response.into_body(), MAX_POLICY_SIZE)
            .collect()
            .await
        {
            Ok(collected) => Ok(collected.to_bytes().to_vec()),
            Err(error) if error.is::<LengthLimitError>() => Err(FetchError::TooLarge {
                host: host.to_string(),
                limit: MAX_POLICY_SIZE,
            }),
            Err(error) => Err(FetchError::Http {
                host: host.to_string(),
                message: error.to_string(),
            }),
        }
    };
    // The connection future does the I/O; it ends when the server closes (we asked for
    // `Connection: close`), after which the exchange has all it will get.
    tokio::pin!(exchange);
    tokio::pin!(connection);
    tokio::select! {
        result = &mut exchange => result,
        ended = &mut connection => match ended {
            Ok(()) => exchange.await,
            Err(error) => Err(http_error(error)),
        },
    }
}

/// Refuses redirects, non-200 answers, media types other than `text/plain`, and a
/// declared length over the limit, before any of the body is read.
fn check_head<B>(response: &hyper::Response<B>, host: &str) -> Result<(), FetchError> {
    let status = response.status();
    if status.is_redirection() {
        let location = response
            .headers()
            .get(header::LOCATION)
            .map(|value| quoted(&String::from_utf8_lossy(value.as_bytes())))
            .unwrap_or_else(|| "\"\"".to_string());
        return Err(FetchError::Redirect {
            host: host.to_string(),
            status: status.as_u16(),
            location,
        });
    }
    if status != StatusCode::OK {
        return Err(FetchError::Status {
            host: host.to_string(),
            status: status.as_u16(),
        });
    }
    let content_type = response.headers().get(header::CONTENT_TYPE);
    let is_text_plain = content_type
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("text/plain"));
    if !is_text_plain {
        return Err(FetchError::ContentType {
            host: host.to_string(),
            found: match content_type {
                Some(value) => quoted(&String::from_utf8_lossy(value.as_bytes())),
                None => "no Content-Type".to_string(),
            },
        });
    }
    let declared = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_POLICY_SIZE as u64) {
        return Err(FetchError::TooLarge {
            host: host.to_string(),
            limit: MAX_POLICY_SIZE,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Runs [`get_policy`] against `response` written raw by the other end of a duplex
    /// pipe, after the request head has been read.
    async fn exchange(response: Vec<u8>) -> (Result<Vec<u8>, FetchError>, String) {
        let (client, mut server) = tokio::io::duplex(256 * 1024);
        let peer = tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = server.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            // The client may stop reading early (a refused head): ignore write errors.
            let _ = server.write_all(&response).await;
            let _ = server.shutdown().await;
            String::from_utf8(request).unwrap()
        });
        let result = get_policy(client, "mta-sts.a.test", 8443).await;
        (result, peer.await.unwrap())
    }

    const POLICY: &str = "version: STSv1\r\nmode: enforce\r\nmx: mx.a.test\r\nmax_age: 60\r\n";

    fn response(head: &str, body: &[u8]) -> Vec<u8> {
        let mut bytes = head.replace('\n', "\r\n").into_bytes();
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(body);
        bytes
    }

    #[tokio::test]
    async fn sends_a_plain_get_and_reads_a_content_length_body() {
        let head = format!(
            "HTTP/1.1 200 OK\nContent-Type: text/plain; charset=utf-8\nContent-Length: {}\n",
            POLICY.len()
        );
        let (result, request) = exchange(response(&head, POLICY.as_bytes())).await;
        assert_eq!(result.unwrap(), POLICY.as_bytes());
        let request = request.to_ascii_lowercase();
        assert!(
            request.starts_with("get /.well-known/mta-sts.txt http/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains("host: mta-sts.a.test:8443\r\n"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn reads_a_chunked_body_and_a_body_ended_by_close() {
        let chunked = format!(
            "{:x}\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
            10,
            &POLICY[..10],
            POLICY.len() - 10,
            &POLICY[10..]
        );
        let (result, _) = exchange(response(
            "HTTP/1.1 200 OK\nContent-Type: text/plain\nTransfer-Encoding: chunked\n",
            chunked.as_bytes(),
        ))
        .await;
        assert_eq!(result.unwrap(), POLICY.as_bytes());
        let (result, _) = exchange(response(
            "HTTP/1.1 200 OK\nContent-Type: TEXT/Plain\nConnection: close\n",
            POLICY.as_bytes(),
        ))
        .await;
        assert_eq!(result.unwrap(), POLICY.as_bytes());
    }

    #[tokio::test]
    async fn refuses_what_rfc_8461_refuses() {
        let big = vec![b'a'; MAX_POLICY_SIZE + 1];
        let chunked_big = format!("{:x}\r\n{}\r\n0\r\n\r\n", big.len(), "a".repeat(big.len()));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                response(
                    "HTTP/1.1 301 Moved Permanently\nLocation: https://evil.test/\nContent-Length: 0\n",
                    b"",
                ),
                "mta-sts.a.test answered HTTP 301 (redirect to \"https://evil.test/\"); redirects are not followed (RFC 8461 §3.3)",
            ),
            (
                response("HTTP/1.1 404 Not Found\nContent-Length: 0\n", b""),
                "mta-sts.a.test answered HTTP 404, not 200",
            ),
            (
                response(
                    "HTTP/1.1 200 OK\nContent-Type: text/html\nContent-Length: 4\n",
                    b"<p/>",
                ),
                "mta-sts.a.test sent the policy as \"text/html\", not text/plain",
            ),
            (
                response("HTTP/1.1 200 OK\nContent-Length: 4\n", b"abcd"),
                "mta-sts.a.test sent the policy as no Content-Type, not text/plain",
            ),
            (
                response(
                    &format!(
                        "HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: {}\n",
                        big.len()
                    ),
                    &big,
                ),
                "the policy from mta-sts.a.test is over 65536 bytes",
            ),
            (
                response(
                    "HTTP/1.1 200 OK\nContent-Type: text/plain\nTransfer-Encoding: chunked\n",
                    chunked_big.as_bytes(),
                ),
                "the policy from mta-sts.a.test is over 65536 bytes",
            ),
            (
                response(
                    "HTTP/1.1 200 OK\nContent-Type: text/plain\nConnection: close\n",
                    &big,
                ),
                "the policy from mta-sts.a.test is over 65536 bytes",
            ),
        ];
        for (raw, want) in cases {
            let (result, _) = exchange(raw).await;
            assert_eq!(result.unwrap_err().to_string(), want);
        }
    }

    #[tokio::test]
    async fn garbage_and_huge_heads_are_http_errors() {
        let huge_head = format!(
            "HTTP/1.1 200 OK\r\nX-Filler: {}\r\n\r\n",
            "a".repeat(64 * 1024)
        );
        for raw in [
            b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec(),
            huge_head.into_bytes(),
            Vec::new(),
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nshort"
                .to_vec(),
        ] {
            let (result, _) = exchange(raw).await;
            assert!(matches!(result, Err(FetchError::Http { .. })), "{result:?}");
        }
    }
}
