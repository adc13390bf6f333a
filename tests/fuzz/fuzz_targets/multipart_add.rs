//! `POST /add` bodies through the gateway's real streaming multipart reader. Its input is
//! a hyper `Incoming` body, so each case is sent over an in-memory HTTP/1.1 connection
//! (tokio duplex, hyper client -> hyper server) in chunks of a fuzzed size, and the
//! server side runs `multipart::boundary` + `Multipart::next` to the end. Input layout:
//! byte 0 = chunk size (0 = one chunk), then the Content-Type up to the first `\n`, then
//! the body. Checks the event grammar (Part Data* PartEnd)* and that no more data comes
//! out than went in.
#![no_main]

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{Full, StreamBody};
use hyper::{body::Frame, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use ipfs_cluster_gateway::add::multipart::{self, Event, Multipart};
use libfuzzer_sys::fuzz_target;

/// A runtime per case: dropping it drops every task of the case, so nothing outlives it
/// (LeakSanitizer would report the buffers of a still-queued connection task).
fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Reads the whole body as the add handler does; returns (events, data bytes) or the
/// reader's error.
async fn read_all(ct: Option<String>, body: hyper::body::Incoming) -> Result<usize, String> {
    let b = multipart::boundary(ct.as_deref()).map_err(|e| e.to_string())?;
    // The limits of the add handler's defaults (max_add_bytes 32 GiB, read_timeout 0 = none
    // here: the fuzzer feeds whole bodies at once).
    let body = multipart::LimitedBody::new(
        body,
        multipart::BodyLimits {
            max_bytes: 32 << 30,
            read_timeout: std::time::Duration::ZERO,
        },
    )
    .map_err(|e| e.to_string())?;
    let mut mp = Multipart::new(body, &b);
    let mut in_part = false;
    let mut data = 0usize;
    loop {
        match mp.next().await.map_err(|e| e.to_string())? {
            None => {
                assert!(!in_part, "body ended inside a part without an error");
                return Ok(data);
            }
            Some(Event::Part(_h)) => {
                assert!(!in_part, "Part inside a part");
                in_part = true;
            }
            Some(Event::Data(d)) => {
                assert!(in_part, "Data outside a part");
                assert!(!d.is_empty(), "empty Data event");
                data += d.len();
            }
            Some(Event::PartEnd) => {
                assert!(in_part, "PartEnd outside a part");
                in_part = false;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let (ct_line, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let ct = String::from_utf8_lossy(ct_line).into_owned();
    // Content-Type must be a valid header value to travel over HTTP at all.
    let Ok(ct_value) = hyper::header::HeaderValue::from_str(&ct) else {
        // Still exercise the boundary parser with it.
        let _ = multipart::boundary(Some(&ct));
        return;
    };
    let body = body.to_vec();
    let body_len = body.len();
    let chunk = if chunk == 0 {
        body_len.max(1)
    } else {
        chunk as usize
    };

    rt().block_on(async move {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let (res_tx, res_rx) = tokio::sync::oneshot::channel::<Result<usize, String>>();
        let res_tx = std::sync::Mutex::new(Some(res_tx));
        let server = tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let ct = req
                    .headers()
                    .get(hyper::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let tx = res_tx.lock().unwrap().take();
                async move {
                    let r = read_all(ct, req.into_body()).await;
                    if let Some(tx) = tx {
                        let _ = tx.send(r);
                    }
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(server_io), svc)
                .await;
        });

        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client_io))
            .await
            .expect("in-memory handshake");
        let client_conn = tokio::spawn(conn);
        let frames: Vec<Result<Frame<Bytes>, Infallible>> = body
            .chunks(chunk)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let req = Request::post("/add")
            .header(hyper::header::CONTENT_TYPE, ct_value)
            .body(StreamBody::new(futures::stream::iter(frames)))
            .expect("a request");
        let _ = sender.send_request(req).await;
        if let Ok(Ok(n)) = res_rx.await {
            assert!(
                n <= body_len,
                "{n} data bytes out of a {body_len}-byte body"
            );
        }
        // Closing the client ends both connections; a reader stuck on a finished body
        // would hang here, which libFuzzer reports as a timeout.
        drop(sender);
        let _ = client_conn.await;
        let _ = server.await;
    });
});
