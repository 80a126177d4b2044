//! What a message posted over HTTP may not ask for, beyond what composition checks for
//! every caller (see `docs/security.md`, field by field).
//!
//! - `relay`: only with `[http] allow_relay = true`, and never a `program:` relay: that
//!   would run a command as the service user for anyone holding a token.
//! - `headers`: no trace fields (`Received`, `Return-Path`): they are written by the
//!   servers a message passes through, and a forged one misleads whoever reads them.
//! - `send_at`: at most `[http] schedule_horizon` ahead, so the queue cannot be filled
//!   with rows that stay for years. A time in the past means "now".
//! - `list_unsubscribe`: only when `[unsubscribe]` is configured, so that a message never
//!   sits in the queue waiting for links that cannot be written.

use std::time::Duration;

use outbox_mime::EmailSpec;
use outbox_smtp::ServerSpec;
use time::OffsetDateTime;

use super::error::ApiError;
use crate::config::Config;

/// Header fields a network client may not set: trace fields (RFC 5322 §3.6.7).
const TRACE_FIELDS: &[&str] = &["Received", "Return-Path"];

/// Checks what a message posted over HTTP asks for; nothing is stored when it fails.
pub fn check_spec(spec: &EmailSpec, config: &Config) -> Result<(), ApiError> {
    let http = &config.http;
    check_relay(spec.relay.as_deref(), http.allow_relay)?;
    if spec.list_unsubscribe && !matches!(config.unsubscribe.links(), Ok(Some(_))) {
        return Err(ApiError::invalid(
            "list_unsubscribe",
            "list_unsubscribe: this server has no [unsubscribe] base_url and secret configured, \
             so it cannot write unsubscribe links",
        ));
    }
    check_headers(&spec.headers)?;
    check_send_at(
        spec.send_at,
        http.schedule_horizon.0,
        OffsetDateTime::now_utc(),
    )
}

fn check_relay(relay: Option<&str>, allow_relay: bool) -> Result<(), ApiError> {
    let Some(relay) = relay else {
        return Ok(());
    };
    // Parsed rather than matched on a prefix, so no spelling of a program relay
    // (case, spaces) slips through; a spec that does not parse is refused either way.
    let is_program = matches!(ServerSpec::parse(relay), Ok(ServerSpec::Program(_)))
        || relay
            .trim_start()
            .get(..8)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("program:"));
    if is_program {
        return Err(ApiError::invalid(
            "relay",
            "relay: program relays are never accepted over HTTP",
        ));
    }
    if !allow_relay {
        return Err(ApiError::invalid(
            "relay",
            "relay: this server does not let messages choose their relay \
             (set [http] allow_relay = true to allow it)",
        ));
    }
    Ok(())
}

fn check_headers(headers: &[(String, String)]) -> Result<(), ApiError> {
    for (name, _) in headers {
        let name = name.trim();
        if let Some(trace) = TRACE_FIELDS.iter().find(|t| t.eq_ignore_ascii_case(name)) {
            return Err(ApiError::invalid(
                "headers",
                format!("headers: {trace} is a trace field, written by mail servers only"),
            ));
        }
    }
    Ok(())
}

fn check_send_at(
    send_at: Option<OffsetDateTime>,
    horizon: Duration,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    let Some(send_at) = send_at else {
        return Ok(());
    };
    let latest = now + horizon;
    if send_at > latest {
        return Err(ApiError::invalid(
            "send_at",
            format!(
                "send_at: more than {} ahead (http.schedule_horizon)",
                humantime::format_duration(horizon)
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relays_need_allow_relay_and_programs_never_pass() {
        assert!(check_relay(None, false).is_ok());
        assert!(check_relay(Some("smtp://127.0.0.1:2525"), true).is_ok());
        let refused = check_relay(Some("smtp://127.0.0.1:2525"), false).unwrap_err();
        assert_eq!(refused.body.field.as_deref(), Some("relay"));
        for program in [
            "program:/usr/bin/touch /tmp/x",
            "PROGRAM:/bin/true",
            "  program: /bin/true",
        ] {
            let err = check_relay(Some(program), true).unwrap_err();
            assert_eq!(err.status, axum::http::StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(err.body.field.as_deref(), Some("relay"), "{program}");
            assert!(err.body.error.contains("never"), "{program}");
        }
    }

    #[test]
    fn trace_headers_are_refused() {
        for name in ["Received", "return-path", " RECEIVED "] {
            let err = check_headers(&[(name.into(), "x".into())]).unwrap_err();
            assert_eq!(err.body.field.as_deref(), Some("headers"));
        }
        assert!(check_headers(&[("X-Campaign".into(), "7".into())]).is_ok());
    }

    #[test]
    fn send_at_is_bounded_ahead_only() {
        let now = OffsetDateTime::now_utc();
        let day = Duration::from_secs(86_400);
        assert!(check_send_at(Some(now + day), 2 * day, now).is_ok());
        assert!(check_send_at(Some(now - 1000 * day), 2 * day, now).is_ok());
        let err = check_send_at(Some(now + 3 * day), 2 * day, now).unwrap_err();
        assert_eq!(err.body.field.as_deref(), Some("send_at"));
    }
}
