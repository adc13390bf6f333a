//! Authentication as upstream's `api/common`: Basic credentials, then Bearer JWTs
//! (HMAC, issuer = user, key = that user's password). Unlike upstream, a user with an
//! empty password can neither log in nor have tokens accepted or issued: upstream lets
//! anyone forge an HS256 token with an empty key for such a user.
//!
//! Beyond upstream (docs/security.md, hole 9): users listed in `read_only_users` have the `read`
//! scope (GET and HEAD only, enforced in server.rs); tokens carry a `scope` and an
//! expiry (`exp`, default [`DEFAULT_TOKEN_LIFETIME`], at most [`MAX_TOKEN_LIFETIME`]);
//! a token without `exp` (upstream's never-expiring kind) is refused. A token's scope is
//! never wider than its user's current one, and since the HMAC key is the user's
//! password, changing the password revokes every token issued before.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use ring::hmac;

pub const REALM: &str = "Restricted IPFS Cluster API";

/// Lifetime of a token from `POST /token` without `lifetime`.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// The longest lifetime `POST /token?lifetime=` grants.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// What an authenticated user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// GET and HEAD only (and `POST /token` for a read-scope token).
    Read,
    /// Everything.
    Write,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            _ => None,
        }
    }
}

/// Why `POST /token` could not issue a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenIssueError {
    #[error("unauthorized: no token can be issued for a user with an empty password")]
    EmptyPassword,
    #[error("forbidden: user {0:?} is read-only (read_only_users) and can only get a token with scope=read")]
    ScopeTooWide(String),
    #[error("token lifetime must be between 1s and {max}, got {got}", max = ipfs_cluster_config::GoDuration::from(MAX_TOKEN_LIFETIME), got = ipfs_cluster_config::GoDuration::from(*.0))]
    Lifetime(Duration),
}

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

/// The configured users (user → password) and which of them may only read.
#[derive(Debug, Clone)]
pub struct Credentials {
    users: BTreeMap<String, String>,
    read_only: BTreeSet<String>,
}

/// Who a request comes from and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub scope: Scope,
}

impl Credentials {
    pub fn new(users: BTreeMap<String, String>) -> Self {
        Self::with_read_only(users, BTreeSet::new())
    }

    /// `read_only` names users of `users` that get the read scope only.
    pub fn with_read_only(users: BTreeMap<String, String>, read_only: BTreeSet<String>) -> Self {
        for (u, p) in &users {
            if p.is_empty() {
                tracing::warn!(user = %u, "basic_auth_credentials: user {u:?} has an empty password; it can never log in and its tokens are refused (set a password to use it)");
            }
        }
        for u in &read_only {
            if !users.contains_key(u) {
                tracing::warn!(user = %u, "read_only_users: {u:?} is not in basic_auth_credentials; it cannot log in");
            }
        }
        Self { users, read_only }
    }

    /// The widest scope `user` has.
    pub fn scope_of(&self, user: &str) -> Scope {
        if self.read_only.contains(user) {
            Scope::Read
        } else {
            Scope::Write
        }
    }

    /// Checks an `Authorization` header value; returns the authenticated user and scope.
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<Principal, AuthFailure> {
        let Some(value) = authorization else {
            return Err(AuthFailure::NoAuth);
        };
        let value = std::str::from_utf8(value).map_err(|_| AuthFailure::NoAuth)?;
        if let Some(b64) = strip_prefix_ci(value, "Basic ") {
            let user = self.check_basic(b64.trim())?;
            let scope = self.scope_of(&user);
            return Ok(Principal { user, scope });
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
    /// signature with that password, `exp` present and in the future, `nbf`/`iat` not
    /// in the future. The scope is the token's `scope` (missing = the user's), never
    /// wider than the user's current one.
    fn check_jwt(&self, token: &str) -> Option<Principal> {
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
        // Tokens must expire: upstream's never-expiring ones are refused.
        if now >= claims.get("exp")?.as_f64()? {
            return None;
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
        let user_scope = self.scope_of(iss);
        let scope = match claims.get("scope") {
            None => user_scope,
            Some(v) => Scope::parse(v.as_str()?)?.min(user_scope),
        };
        Some(Principal {
            user: iss.to_string(),
            scope,
        })
    }

    /// Issues a token for `user` (upstream's HS256 with `{"iss":user}`, plus `iat`, `exp`
    /// and `scope`). `scope` defaults to the user's; asking a wider one is refused.
    pub fn issue_token(
        &self,
        user: &str,
        scope: Option<Scope>,
        lifetime: Option<Duration>,
    ) -> Result<String, TokenIssueError> {
        let password = self.users.get(user).ok_or(TokenIssueError::EmptyPassword)?;
        if password.is_empty() {
            return Err(TokenIssueError::EmptyPassword);
        }
        let user_scope = self.scope_of(user);
        let scope = scope.unwrap_or(user_scope);
        if scope > user_scope {
            return Err(TokenIssueError::ScopeTooWide(user.to_string()));
        }
        let lifetime = lifetime.unwrap_or(DEFAULT_TOKEN_LIFETIME);
        if lifetime < Duration::from_secs(1) || lifetime > MAX_TOKEN_LIFETIME {
            return Err(TokenIssueError::Lifetime(lifetime));
        }
        let now = chrono::Utc::now().timestamp();
        let claims = serde_json::json!({
            "iss": user,
            "iat": now,
            "exp": now + lifetime.as_secs() as i64,
            "scope": scope.as_str(),
        });
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{claims}");
        let key = hmac::Key::new(hmac::HMAC_SHA256, password.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(hmac::sign(&key, signing_input.as_bytes()).as_ref());
        Ok(format!("{signing_input}.{sig}"))
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

/// Failed-authentication throttling per client (an IP address, or a libp2p peer id for
/// `/libp2p-http` requests): after `FREE_FAILURES` wrong credentials in a row, that client
/// is refused (429, before any credential is looked at)
/// for a delay that doubles with each further failure, up to `MAX_DELAY`; a success
/// clears it. Brute-forcing a password then costs minutes per guess, not microseconds.
/// At most `MAX_TRACKED` clients are remembered (the stalest are forgotten first).
#[derive(Default)]
pub struct AuthThrottle {
    by_client: std::sync::Mutex<std::collections::HashMap<String, Failures>>,
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
    /// `Some(wait)` while `client` must not try again.
    pub fn blocked(&self, client: &str) -> Option<std::time::Duration> {
        let now = std::time::Instant::now();
        let m = self.by_client.lock().unwrap();
        m.get(client)
            .and_then(|f| f.blocked_until.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    pub fn failed(&self, client: &str) {
        let now = std::time::Instant::now();
        let mut m = self.by_client.lock().unwrap();
        if m.len() >= MAX_TRACKED && !m.contains_key(client) {
            if let Some(stalest) = m.iter().min_by_key(|(_, f)| f.last).map(|(k, _)| k.clone()) {
                m.remove(&stalest);
            }
        }
        let f = m.entry(client.to_string()).or_insert(Failures {
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

    pub fn succeeded(&self, client: &str) {
        self.by_client.lock().unwrap().remove(client);
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
        let a = "127.0.0.1";
        let b = "12D3KooWLibp2pClient";
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
        assert!(t.blocked(b).is_none(), "other clients are not affected");
        t.succeeded(a);
        assert!(t.blocked(a).is_none());
    }

    fn alice() -> Result<Principal, AuthFailure> {
        Ok(Principal {
            user: "alice".into(),
            scope: Scope::Write,
        })
    }

    fn bearer(t: &str) -> Vec<u8> {
        format!("Bearer {t}").into_bytes()
    }

    /// A token signed with `key` carrying `claims` (what someone holding the key can make).
    fn signed(claims: &str, key: &str) -> String {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let cl = URL_SAFE_NO_PAD.encode(claims);
        let key = hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(hmac::sign(&key, format!("{h}.{cl}").as_bytes()).as_ref());
        format!("{h}.{cl}.{sig}")
    }

    fn claims_of(t: &str) -> serde_json::Value {
        let c = t.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).unwrap()).unwrap()
    }

    #[test]
    fn basic_auth() {
        let c = creds();
        assert_eq!(c.check(Some(basic("alice", "secret").as_bytes())), alice());
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
    fn jwt_roundtrip_carries_issuer_scope_and_expiry() {
        let c = creds();
        let t = c.issue_token("alice", None, None).unwrap();
        assert!(t.starts_with("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."));
        let cl = claims_of(&t);
        assert_eq!(cl["iss"], "alice");
        assert_eq!(cl["scope"], "write");
        let (iat, exp) = (cl["iat"].as_i64().unwrap(), cl["exp"].as_i64().unwrap());
        assert_eq!(exp - iat, DEFAULT_TOKEN_LIFETIME.as_secs() as i64);
        assert!((iat - chrono::Utc::now().timestamp()).abs() < 5);
        assert_eq!(c.check(Some(&bearer(&t))), alice());
        assert_eq!(
            c.check(Some(format!("bearer {t}").as_bytes())),
            alice(),
            "the scheme is case-insensitive"
        );
        let mut bad = t.clone();
        bad.pop();
        bad.push(if t.ends_with('A') { 'B' } else { 'A' });
        assert_eq!(c.check(Some(&bearer(&bad))), Err(AuthFailure::InvalidToken));
    }

    #[test]
    fn empty_password_token_forgery_is_refused() {
        let c = creds();
        assert_eq!(
            c.issue_token("userwithoutpass", None, None),
            Err(TokenIssueError::EmptyPassword)
        );
        assert_eq!(
            c.issue_token("nobody", None, None),
            Err(TokenIssueError::EmptyPassword)
        );
        // Forge exactly what upstream would accept: HS256 with an empty key.
        let far = chrono::Utc::now().timestamp() + 3600;
        for claims in [
            r#"{"iss":"userwithoutpass"}"#.to_string(),
            format!(r#"{{"iss":"userwithoutpass","exp":{far}}}"#),
        ] {
            assert_eq!(
                c.check(Some(&bearer(&signed(&claims, "")))),
                Err(AuthFailure::InvalidToken)
            );
        }
    }

    #[test]
    fn alg_none_expired_and_never_expiring_refused() {
        let c = creds();
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let cl = URL_SAFE_NO_PAD.encode(br#"{"iss":"alice"}"#);
        assert_eq!(
            c.check(Some(format!("Bearer {h}.{cl}.").as_bytes())),
            Err(AuthFailure::InvalidToken)
        );
        let expired = signed(r#"{"iss":"alice","exp":1000}"#, "secret");
        assert_eq!(
            c.check(Some(&bearer(&expired))),
            Err(AuthFailure::InvalidToken)
        );
        // Upstream's token (no exp) is valid there forever; here it is refused.
        let upstream = signed(r#"{"iss":"alice"}"#, "secret");
        assert_eq!(
            c.check(Some(&bearer(&upstream))),
            Err(AuthFailure::InvalidToken)
        );
        let far = chrono::Utc::now().timestamp() + 3600;
        let future_nbf = signed(
            &format!(r#"{{"iss":"alice","exp":{far},"nbf":{far}}}"#),
            "secret",
        );
        assert_eq!(
            c.check(Some(&bearer(&future_nbf))),
            Err(AuthFailure::InvalidToken)
        );
        let ok = signed(&format!(r#"{{"iss":"alice","exp":{far}}}"#), "secret");
        assert_eq!(c.check(Some(&bearer(&ok))), alice());
    }

    #[test]
    fn lifetimes_are_bounded() {
        let c = creds();
        let t = c
            .issue_token("alice", None, Some(Duration::from_secs(60)))
            .unwrap();
        let cl = claims_of(&t);
        assert_eq!(
            cl["exp"].as_i64().unwrap() - cl["iat"].as_i64().unwrap(),
            60
        );
        assert!(c
            .issue_token("alice", None, Some(MAX_TOKEN_LIFETIME))
            .is_ok());
        for bad in [Duration::ZERO, MAX_TOKEN_LIFETIME + Duration::from_secs(1)] {
            let e = c.issue_token("alice", None, Some(bad)).unwrap_err();
            assert_eq!(e, TokenIssueError::Lifetime(bad));
            assert!(e.to_string().contains("720h0m0s"), "{e}");
        }
    }

    #[test]
    fn read_only_users_get_read_scope_only() {
        let c = Credentials::with_read_only(
            BTreeMap::from([
                ("alice".to_string(), "secret".to_string()),
                ("bob".to_string(), "hunter2".to_string()),
            ]),
            BTreeSet::from(["bob".to_string()]),
        );
        let bob = Principal {
            user: "bob".into(),
            scope: Scope::Read,
        };
        assert_eq!(
            c.check(Some(basic("bob", "hunter2").as_bytes())),
            Ok(bob.clone())
        );
        // A read-only user's token is read-scoped; asking for write is refused.
        let t = c.issue_token("bob", None, None).unwrap();
        assert_eq!(claims_of(&t)["scope"], "read");
        assert_eq!(c.check(Some(&bearer(&t))), Ok(bob.clone()));
        assert_eq!(
            c.issue_token("bob", Some(Scope::Write), None),
            Err(TokenIssueError::ScopeTooWide("bob".into()))
        );
        // A write token made with bob's password (as if issued before bob became
        // read-only) is narrowed to the user's current scope.
        let far = chrono::Utc::now().timestamp() + 3600;
        let forged = signed(
            &format!(r#"{{"iss":"bob","exp":{far},"scope":"write"}}"#),
            "hunter2",
        );
        assert_eq!(c.check(Some(&bearer(&forged))), Ok(bob));
        // A writer may ask for a read-only token.
        let t = c.issue_token("alice", Some(Scope::Read), None).unwrap();
        assert_eq!(
            c.check(Some(&bearer(&t))),
            Ok(Principal {
                user: "alice".into(),
                scope: Scope::Read
            })
        );
        // An unknown scope is refused.
        let odd = signed(
            &format!(r#"{{"iss":"alice","exp":{far},"scope":"admin"}}"#),
            "secret",
        );
        assert_eq!(c.check(Some(&bearer(&odd))), Err(AuthFailure::InvalidToken));
    }

    #[test]
    fn a_changed_password_revokes_tokens() {
        let before = creds();
        let t = before.issue_token("alice", None, None).unwrap();
        assert_eq!(before.check(Some(&bearer(&t))), alice());
        let after = Credentials::new(BTreeMap::from([(
            "alice".to_string(),
            "new secret".to_string(),
        )]));
        assert_eq!(
            after.check(Some(&bearer(&t))),
            Err(AuthFailure::InvalidToken)
        );
        let t2 = after.issue_token("alice", None, None).unwrap();
        assert_eq!(after.check(Some(&bearer(&t2))), alice());
    }
}
