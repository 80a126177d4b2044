//! Who may see the admin page: login sessions kept in memory, their cookie, and the
//! per-session CSRF token every POST must carry.
//!
//! A session id is 32 random bytes, never the API token itself; it lives in this
//! process only, for [`SESSION_TTL`], so every session ends when `outbox serve`
//! restarts. The CSRF token is HMAC-SHA256 of the session id under a key drawn at
//! random when the process starts: a page can embed it, a cross-site form cannot guess
//! it, and nothing has to be stored for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::http::AppState;
use crate::http::auth::constant_time_eq;

/// The name of the session cookie.
pub const COOKIE_NAME: &str = "outbox_session";

/// How long a login lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 60 * 60);

/// The live sessions of this process and the key their CSRF tokens are made with.
pub struct Sessions {
    csrf_key: [u8; 32],
    live: Mutex<HashMap<String, Instant>>,
    ttl: Duration,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").field("ttl", &self.ttl).finish()
    }
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new(SESSION_TTL)
    }
}

impl Sessions {
    /// An empty session table whose logins last `ttl`, with a fresh random CSRF key.
    pub fn new(ttl: Duration) -> Self {
        let mut csrf_key = [0u8; 32];
        rand::rng().fill_bytes(&mut csrf_key);
        Sessions {
            csrf_key,
            live: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    /// Starts a session and returns its id (the cookie value).
    pub fn create(&self) -> String {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let id = URL_SAFE_NO_PAD.encode(bytes);
        let now = Instant::now();
        let mut live = self.lock();
        // Expired sessions are dropped here, so the table cannot grow without bound.
        live.retain(|_, expires| *expires > now);
        live.insert(id.clone(), now + self.ttl);
        id
    }

    /// True when `id` names a session that has not expired.
    pub fn is_live(&self, id: &str) -> bool {
        let now = Instant::now();
        let mut live = self.lock();
        match live.get(id) {
            Some(expires) if *expires > now => true,
            Some(_) => {
                live.remove(id);
                false
            }
            None => false,
        }
    }

    /// Ends a session (logout).
    pub fn end(&self, id: &str) {
        self.lock().remove(id);
    }

    /// The CSRF token of a session: HMAC-SHA256(process key, session id), base64url.
    pub fn csrf_token(&self, session_id: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.csrf_key)
            .expect("HMAC-SHA256 takes a key of any length");
        mac.update(b"outbox-admin-csrf\0");
        mac.update(session_id.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Checks a submitted CSRF token against the session's, in constant time.
    pub fn csrf_ok(&self, session_id: &str, submitted: &str) -> bool {
        constant_time_eq(self.csrf_token(session_id).as_bytes(), submitted.as_bytes())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        // A panic while holding the lock leaves a plain map behind: still usable.
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The `Set-Cookie` value that starts a session.
///
/// HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it),
/// Path=/. Not `Secure`: `outbox serve` listens on plain HTTP on loopback, where a
/// browser would refuse to send a Secure cookie back; put TLS in front and the cookie
/// still only travels to this origin.
pub fn session_cookie(id: &str) -> String {
    format!(
        "{COOKIE_NAME}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_TTL.as_secs()
    )
}

/// The `Set-Cookie` value that makes the browser forget the session.
pub fn clear_cookie() -> String {
    format!("{COOKIE_NAME}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

/// The session id in a request's `Cookie` headers, if any.
pub fn session_from_cookies(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.trim().to_string())
        .filter(|value| !value.is_empty())
}

/// Someone allowed to use the admin page.
#[derive(Debug, Clone)]
pub enum Viewer {
    /// A browser logged in with the form; POSTs must carry `csrf`.
    Session {
        /// The session id.
        id: String,
        /// The session's CSRF token, for the forms of the page.
        csrf: String,
    },
    /// A script with `Authorization: Bearer TOKEN`. Browsers never attach that header
    /// on their own, so a cross-site request cannot carry it and no CSRF token is needed.
    Bearer,
}

impl Viewer {
    /// The CSRF token to put in the page's forms (empty for Bearer requests).
    pub fn csrf(&self) -> &str {
        match self {
            Viewer::Session { csrf, .. } => csrf,
            Viewer::Bearer => "",
        }
    }

    /// Checks a POST's CSRF field: a session needs its own token, Bearer needs none.
    pub fn check_csrf(&self, sessions: &Sessions, submitted: Option<&str>) -> bool {
        match self {
            Viewer::Session { id, .. } => {
                submitted.is_some_and(|token| sessions.csrf_ok(id, token))
            }
            Viewer::Bearer => true,
        }
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        if let Some(header) = parts.headers.get(AUTHORIZATION) {
            let client = crate::http::throttle::client_address(&parts.extensions);
            if let Some(wait) = state.throttle.blocked(client) {
                let mut page = super::pages::error_page(
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    "Too many attempts",
                    &format!(
                        "Too many wrong tokens from this address. Try again in {wait} seconds."
                    ),
                );
                page.headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, wait.into());
                return Err(page);
            }
            let valid = header
                .to_str()
                .is_ok_and(|value| state.tokens.accepts_header(value));
            return if valid {
                Ok(Viewer::Bearer)
            } else {
                state.throttle.failed(client, "admin page");
                Err(super::pages::error_page(
                    axum::http::StatusCode::UNAUTHORIZED,
                    "Wrong token",
                    "The Authorization header does not carry an accepted token.",
                ))
            };
        }
        let Some(sessions) = sessions(parts) else {
            return Err(super::pages::error_page(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "Server error",
                "The admin page was mounted without its session table.",
            ));
        };
        match session_from_cookies(parts) {
            Some(id) if sessions.is_live(&id) => {
                let csrf = sessions.csrf_token(&id);
                Ok(Viewer::Session { id, csrf })
            }
            _ => Err(Redirect::to("/login").into_response()),
        }
    }
}

/// The session table the admin router carries as an extension.
pub fn sessions(parts: &Parts) -> Option<Arc<Sessions>> {
    parts.extensions.get::<Arc<Sessions>>().cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_live_expire_and_end() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let id = sessions.create();
        assert_eq!(id.len(), 43, "32 bytes in base64url without padding");
        assert!(sessions.is_live(&id));
        assert!(!sessions.is_live("not-a-session"));
        sessions.end(&id);
        assert!(!sessions.is_live(&id));

        let short = Sessions::new(Duration::ZERO);
        let id = short.create();
        assert!(!short.is_live(&id), "a session past its ttl is dead");
    }

    #[test]
    fn csrf_tokens_are_per_session_and_per_process() {
        let sessions = Sessions::default();
        let a = sessions.create();
        let b = sessions.create();
        let token = sessions.csrf_token(&a);
        assert!(sessions.csrf_ok(&a, &token));
        assert!(!sessions.csrf_ok(&b, &token));
        assert!(!sessions.csrf_ok(&a, ""));
        assert!(
            !Sessions::default().csrf_ok(&a, &token),
            "another process key"
        );
    }

    #[test]
    fn cookie_attributes_and_parsing() {
        let cookie = session_cookie("abc");
        assert!(cookie.starts_with("outbox_session=abc;"));
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(cookie.contains(attribute), "{cookie}");
        }
        let request = axum::http::Request::builder()
            .header(COOKIE, "theme=dark; outbox_session=xyz ; other=1")
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        assert_eq!(session_from_cookies(&parts).as_deref(), Some("xyz"));
    }
}
