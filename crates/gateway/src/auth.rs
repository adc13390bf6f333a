//! Authentication as upstream's `api/common` (§3): Basic credentials, then Bearer JWTs
//! (HMAC, issuer = user, key = that user's password). Unlike upstream, a user with an
//! empty password can neither log in nor have tokens accepted or issued: upstream lets
//! anyone forge an HS256 token with an empty key for such a user.

use std::collections::BTreeMap;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use ring::hmac;

pub const REALM: &str = "Restricted IPFS Cluster API";

/// Why a request was refused (the 401 message and headers depend on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// Basic credentials given but wrong.
    AccessDenied,
    /// A bearer token given but invalid.
    InvalidToken,
    /// No usable credentials at all.
    NoAuth,
}

impl AuthFailure {
    pub fn message(self) -> &'static str {
        match self {
            AuthFailure::AccessDenied => "unauthorized: access denied",
            AuthFailure::InvalidToken => "unauthorized: invalid token",
            AuthFailure::NoAuth => "unauthorized: no auth provided",
        }
    }

    /// `WWW-Authenticate` values, in order.
    pub fn challenges(self) -> Vec<String> {
        match self {
            AuthFailure::AccessDenied => vec![format!("Basic realm=\"{REALM}\"")],
            AuthFailure::InvalidToken => {
                vec![format!("Bearer realm=\"{REALM}\", error=\"invalid_token\"")]
            }
            AuthFailure::NoAuth => vec![
                format!("Bearer realm=\"{REALM}\""),
                format!("Basic realm=\"{REALM}\""),
            ],
        }
    }
}

/// The configured users (user → password).
#[derive(Debug, Clone)]
pub struct Credentials {
    users: BTreeMap<String, String>,
}

impl Credentials {
    pub fn new(users: BTreeMap<String, String>) -> Self {
        for (u, p) in &users {
            if p.is_empty() {
                tracing::warn!(user = %u, "basic_auth_credentials: user {u:?} has an empty password; it can never log in and its tokens are refused (set a password to use it)");
            }
        }
        Self { users }
    }

    /// Checks an `Authorization` header value; returns the authenticated user.
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<String, AuthFailure> {
        let Some(value) = authorization else {
            return Err(AuthFailure::NoAuth);
        };
        let value = std::str::from_utf8(value).map_err(|_| AuthFailure::NoAuth)?;
        if let Some(b64) = strip_prefix_ci(value, "Basic ") {
            return self.check_basic(b64.trim());
        }
        if let Some(token) = strip_prefix_ci(value, "Bearer ") {
            return self
                .check_jwt(token.trim())
                .ok_or(AuthFailure::InvalidToken);
        }
        Err(AuthFailure::NoAuth)
    }

    fn check_basic(&self, b64: &str) -> Result<String, AuthFailure> {
        use base64::engine::general_purpose::STANDARD;
        let raw = STANDARD.decode(b64).map_err(|_| AuthFailure::NoAuth)?;
        let raw = String::from_utf8(raw).map_err(|_| AuthFailure::NoAuth)?;
        let Some((user, pass)) = raw.split_once(':') else {
            return Err(AuthFailure::NoAuth);
        };
        if user.is_empty() || pass.is_empty() {
            return Err(AuthFailure::AccessDenied);
        }
        if password_matches(self.users.get(user).map(String::as_str), pass) {
            Ok(user.to_string())
        } else {
            Err(AuthFailure::AccessDenied)
        }
    }

    /// Verifies a JWT: HMAC family, `iss` a configured user with a NON-EMPTY password,
    /// signature with that password, `exp`/`nbf` checked when present.
    fn check_jwt(&self, token: &str) -> Option<String> {
        let mut parts = token.split('.');
        let (h, c, s) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
        let alg = match header.get("alg")?.as_str()? {
            "HS256" => hmac::HMAC_SHA256,
            "HS384" => hmac::HMAC_SHA384,
            "HS512" => hmac::HMAC_SHA512,
            _ => return None,
        };
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).ok()?).ok()?;
        let iss = claims.get("iss")?.as_str()?;
        let password = self.users.get(iss)?;
        if password.is_empty() {
            tracing::warn!(user = %iss, "refused a bearer token for a user with an empty password (such tokens can be forged by anyone)");
            return None;
        }
        let sig = URL_SAFE_NO_PAD.decode(s).ok()?;
        let key = hmac::Key::new(alg, password.as_bytes());
        hmac::verify(&key, format!("{h}.{c}").as_bytes(), &sig).ok()?;
        let now = chrono::Utc::now().timestamp() as f64;
        if let Some(exp) = claims.get("exp") {
            if now >= exp.as_f64()? {
                return None;
            }
        }
        if let Some(nbf) = claims.get("nbf") {
            if now < nbf.as_f64()? {
                return None;
            }
        }
        if let Some(iat) = claims.get("iat") {
            if now < iat.as_f64()? {
                return None;
            }
        }
        Some(iss.to_string())
    }

    /// Issues upstream's never-expiring token for `user`: HS256, claims `{"iss":user}`.
    /// `None` when the user is unknown or has an empty password.
    pub fn issue_token(&self, user: &str) -> Option<String> {
        let password = self.users.get(user)?;
        if password.is_empty() {
            return None;
        }
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&serde_json::json!({ "iss": user })).ok()?);
        let signing_input = format!("{header}.{claims}");
        let key = hmac::Key::new(hmac::HMAC_SHA256, password.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(hmac::sign(&key, signing_input.as_bytes()).as_ref());
        Some(format!("{signing_input}.{sig}"))
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len()
        && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes()))
    .then(|| &s[prefix.len()..])
}

/// Compares a password in time that depends on neither its length nor the stored one's,
/// nor on whether the user exists: both sides are hashed to 32 bytes first and every byte
/// is compared. An unknown user or an empty stored password never matches.
fn password_matches(stored: Option<&str>, given: &str) -> bool {
    use ring::digest::{digest, SHA256};
    let want = digest(&SHA256, stored.unwrap_or("").as_bytes());
    let got = digest(&SHA256, given.as_bytes());
    let same = want
        .as_ref()
        .iter()
        .zip(got.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0;
    same && stored.is_some_and(|s| !s.is_empty())
}

/// Failed-authentication throttling per client address: after `FREE_FAILURES` wrong
/// credentials in a row, that address is refused (429, before any credential is looked at)
/// for a delay that doubles with each further failure, up to `MAX_DELAY`; a success
/// clears it. Brute-forcing a password then costs minutes per guess, not microseconds.
/// At most `MAX_TRACKED` addresses are remembered (the stalest are forgotten first).
#[derive(Default)]
pub struct AuthThrottle {
    by_ip: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, Failures>>,
}

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    blocked_until: std::time::Instant,
    last: std::time::Instant,
}

pub const FREE_FAILURES: u32 = 5;
pub const MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(60);
const MAX_TRACKED: usize = 10_000;

impl AuthThrottle {
    /// `Some(wait)` while `ip` must not try again.
    pub fn blocked(&self, ip: std::net::IpAddr) -> Option<std::time::Duration> {
        let now = std::time::Instant::now();
        let m = self.by_ip.lock().unwrap();
        m.get(&ip)
            .and_then(|f| f.blocked_until.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    pub fn failed(&self, ip: std::net::IpAddr) {
        let now = std::time::Instant::now();
        let mut m = self.by_ip.lock().unwrap();
        if m.len() >= MAX_TRACKED && !m.contains_key(&ip) {
            if let Some(stalest) = m.iter().min_by_key(|(_, f)| f.last).map(|(k, _)| *k) {
                m.remove(&stalest);
            }
        }
        let f = m.entry(ip).or_insert(Failures {
            count: 0,
            blocked_until: now,
            last: now,
        });
        f.count += 1;
        f.last = now;
        if f.count >= FREE_FAILURES {
            let exp = (f.count - FREE_FAILURES).min(16);
            let delay = std::time::Duration::from_secs(1u64 << exp).min(MAX_DELAY);
            f.blocked_until = now + delay;
        }
    }

    pub fn succeeded(&self, ip: std::net::IpAddr) {
        self.by_ip.lock().unwrap().remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    fn creds() -> Credentials {
        Credentials::new(BTreeMap::from([
            ("alice".to_string(), "secret".to_string()),
            ("userwithoutpass".to_string(), String::new()),
        ]))
    }

    fn basic(u: &str, p: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{u}:{p}")))
    }

    #[test]
    fn password_comparison_ignores_lengths_and_unknown_users() {
        assert!(password_matches(Some("secret"), "secret"));
        assert!(!password_matches(Some("secret"), "secre"));
        assert!(!password_matches(Some("secret"), "secretx"));
        assert!(!password_matches(None, ""));
        assert!(!password_matches(Some(""), ""));
    }

    #[test]
    fn failed_logins_are_throttled_per_address() {
        let t = AuthThrottle::default();
        let a: std::net::IpAddr = "127.0.0.1".parse().unwrap();
        let b: std::net::IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..FREE_FAILURES - 1 {
            t.failed(a);
            assert!(t.blocked(a).is_none(), "the first failures are free");
        }
        t.failed(a);
        let d = t.blocked(a).expect("blocked after too many failures");
        assert!(d <= std::time::Duration::from_secs(1));
        t.failed(a);
        assert!(
            t.blocked(a).unwrap() > std::time::Duration::from_secs(1),
            "doubles"
        );
        for _ in 0..40 {
            t.failed(a);
        }
        assert!(t.blocked(a).unwrap() <= MAX_DELAY);
        assert!(t.blocked(b).is_none(), "other addresses are not affected");
        t.succeeded(a);
        assert!(t.blocked(a).is_none());
    }

    #[test]
    fn basic_auth() {
        let c = creds();
        assert_eq!(
            c.check(Some(basic("alice", "secret").as_bytes())),
            Ok("alice".into())
        );
        assert_eq!(
            c.check(Some(basic("alice", "nope").as_bytes())),
            Err(AuthFailure::AccessDenied)
        );
        assert_eq!(
            c.check(Some(basic("userwithoutpass", "").as_bytes())),
            Err(AuthFailure::AccessDenied)
        );
        assert_eq!(c.check(None), Err(AuthFailure::NoAuth));
    }

    #[test]
    fn jwt_roundtrip_and_known_bytes() {
        let c = creds();
        let t = c.issue_token("alice").unwrap();
        // Deterministic: same user and password give the same token (as upstream).
        assert_eq!(t, c.issue_token("alice").unwrap());
        assert!(t.starts_with("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJhbGljZSJ9."));
        assert_eq!(
            c.check(Some(format!("Bearer {t}").as_bytes())),
            Ok("alice".into())
        );
        assert_eq!(
            c.check(Some(format!("bearer {t}").as_bytes())),
            Ok("alice".into())
        );
        let mut bad = t.clone();
        bad.pop();
        bad.push('A');
        assert_eq!(
            c.check(Some(format!("Bearer {bad}").as_bytes())),
            Err(AuthFailure::InvalidToken)
        );
    }

    #[test]
    fn empty_password_token_forgery_is_refused() {
        let c = creds();
        assert!(c.issue_token("userwithoutpass").is_none());
        // Forge exactly what upstream would accept: HS256 with an empty key.
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let cl = URL_SAFE_NO_PAD.encode(br#"{"iss":"userwithoutpass"}"#);
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"");
        let sig = URL_SAFE_NO_PAD.encode(hmac::sign(&key, format!("{h}.{cl}").as_bytes()).as_ref());
        let forged = format!("Bearer {h}.{cl}.{sig}");
        assert_eq!(
            c.check(Some(forged.as_bytes())),
            Err(AuthFailure::InvalidToken)
        );
    }

    #[test]
    fn alg_none_and_expired_refused() {
        let c = creds();
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let cl = URL_SAFE_NO_PAD.encode(br#"{"iss":"alice"}"#);
        assert_eq!(
            c.check(Some(format!("Bearer {h}.{cl}.").as_bytes())),
            Err(AuthFailure::InvalidToken)
        );
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let cl = URL_SAFE_NO_PAD.encode(br#"{"iss":"alice","exp":1000}"#);
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"secret");
        let sig = URL_SAFE_NO_PAD.encode(hmac::sign(&key, format!("{h}.{cl}").as_bytes()).as_ref());
        assert_eq!(
            c.check(Some(format!("Bearer {h}.{cl}.{sig}").as_bytes())),
            Err(AuthFailure::InvalidToken)
        );
    }
}
