//! `Authorization` headers on the REST API and the Pinning Services API, read before the
//! client is authenticated: the gateway's real `auth::Credentials::check` (Basic and
//! Bearer/JWT: base64, JSON header and claims, HMAC, exp/nbf/iat) on fuzzed values. Only
//! the right password or a token signed with a configured user's password may pass, and
//! what passes names that user.
//!
//! Input: byte 0 picks a mode. 0: the rest is the header value as sent. 1: the rest is
//! `header-json \0 claims-json`, signed with the real password (reaches claim checks).
//! 2: the same, signed with the empty password (a user without a password must not be
//! forgeable, so it must be refused). 3: `Basic` with the rest
//! as `user:password` (must pass only for the configured pair). 4: the other checks that
//! run before authentication, `request_guard::check_host` / `check_origin` and the CORS
//! preflight (`cors::Cors`), on `Host \0 Origin \0 request-method \0 request-headers`;
//! with upstream's default CORS (any origin, GET only) no cross-origin write may pass.
#![no_main]

use std::collections::BTreeMap;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use hyper::{header, header::HeaderValue, HeaderMap, Method, Uri};
use ipfs_cluster_gateway::{
    http::auth::Credentials,
    http::cors::Cors,
    http::request_guard::{check_host, check_origin},
    options::CorsOptions,
};
use libfuzzer_sys::fuzz_target;

const USER: &str = "admin";
const PASS: &str = "s3cret";

fn sign(header: &[u8], claims: &[u8], key: &str) -> String {
    let h = URL_SAFE_NO_PAD.encode(header);
    let c = URL_SAFE_NO_PAD.encode(claims);
    let input = format!("{h}.{c}");
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(ring::hmac::sign(&k, input.as_bytes()).as_ref());
    format!("Bearer {input}.{sig}")
}

fuzz_target!(|data: &[u8]| {
    let creds = Credentials::new(BTreeMap::from([
        (USER.to_string(), PASS.to_string()),
        ("nopass".to_string(), String::new()),
    ]));
    let Some((&mode, rest)) = data.split_first() else {
        assert!(creds.check(None).is_err());
        return;
    };
    match mode % 5 {
        0 => {
            if let Ok(p) = creds.check(Some(rest)) {
                assert_eq!(p.user, USER, "only the configured user authenticates");
                let v = String::from_utf8_lossy(rest).to_ascii_lowercase();
                assert!(
                    v.starts_with("basic ") || v.starts_with("bearer "),
                    "{v:?} passed without a Basic or Bearer scheme"
                );
            }
        }
        1 | 2 => {
            let mut parts = rest.splitn(2, |b| *b == 0);
            let (h, c) = (parts.next().unwrap_or(b""), parts.next().unwrap_or(b""));
            // Mode 2 signs with the empty password: a user without one must not be forgeable.
            let key = if mode % 5 == 1 { PASS } else { "" };
            let value = sign(h, c, key);
            match creds.check(Some(value.as_bytes())) {
                Ok(p) => {
                    assert_eq!(mode % 5, 1, "a token signed with the empty password passed");
                    assert_eq!(p.user, USER);
                }
                Err(_) => {}
            }
            // The server's own token always passes.
            let token = creds
                .issue_token(USER, None, None)
                .expect("a token for a user with a password");
            let own = creds.check(Some(format!("Bearer {token}").as_bytes())).ok();
            assert_eq!(own.map(|p| p.user).as_deref(), Some(USER));
            assert!(creds.issue_token("nopass", None, None).is_err());
        }
        4 => guards(rest),
        _ => {
            use base64::engine::general_purpose::STANDARD;
            let value = format!("Basic {}", STANDARD.encode(rest));
            let ok = creds.check(Some(value.as_bytes()));
            let expected = rest == format!("{USER}:{PASS}").as_bytes();
            assert_eq!(
                ok.is_ok(),
                expected,
                "Basic {:?}",
                String::from_utf8_lossy(rest)
            );
        }
    }
});

fn guards(rest: &[u8]) {
    let mut parts = rest.split(|b| *b == 0);
    let mut h = HeaderMap::new();
    for name in [
        header::HOST,
        header::ORIGIN,
        header::ACCESS_CONTROL_REQUEST_METHOD,
        header::ACCESS_CONTROL_REQUEST_HEADERS,
    ] {
        if let Some(v) = parts.next().and_then(|p| HeaderValue::from_bytes(p).ok()) {
            h.insert(name, v);
        }
    }
    let uri = Uri::from_static("/pins");
    let _ = check_host(&h, &uri, true);
    let _ = check_host(&h, &uri, false);
    let cors = Cors::new(&CorsOptions::default());
    for m in [Method::GET, Method::POST, Method::DELETE, Method::OPTIONS] {
        let r = check_origin(&m, &h, &cors);
        if h.contains_key(header::ORIGIN) && (m == Method::POST || m == Method::DELETE) {
            assert!(r.is_err(), "a cross-origin {m} passed the default CORS");
        }
        let mut resp = HeaderMap::new();
        cors.decorate(&m, &h, &mut resp);
    }
    if Cors::is_preflight(&Method::OPTIONS, &h) {
        let _ = cors.preflight(&h);
    }
}
