//! Bytes in/out per libp2p protocol (what `GET /health/bandwidth` reports, as upstream's
//! `BandwidthByProtocol`). libp2p has no per-protocol counter, so the connection's stream
//! muxer is wrapped: every substream counts its bytes, and learns its protocol by reading
//! the listener's side of the multistream-select negotiation (the listener echoes the
//! protocol it accepted, after the `/multistream/1.0.0` header and any `na` refusals).
//! Bytes seen before the protocol is known are credited once it is; a substream that never
//! negotiates (or whose negotiation cannot be parsed) is counted as `unknown`.

use std::{
    collections::HashMap,
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::Instant,
};

use futures::{ready, AsyncRead, AsyncWrite};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent};

/// More distinct protocol ids than this are counted under `other` (a remote peer cannot
/// grow the table without bound by proposing made-up protocols).
const MAX_PROTOCOLS: usize = 256;
/// Bytes of negotiation we look at before giving up on learning the protocol.
const MAX_SNIFF: usize = 1024;
const UNKNOWN: &str = "unknown";

#[derive(Default)]
struct Counters {
    total_in: AtomicU64,
    total_out: AtomicU64,
}

struct Sample {
    at: Instant,
    total_in: u64,
    total_out: u64,
    rate_in: f64,
    rate_out: f64,
}

/// One protocol's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtocolStats {
    pub protocol: String,
    pub total_in: u64,
    pub total_out: u64,
    /// Bytes per second, averaged since the previous snapshot (at least one second ago).
    pub rate_in: f64,
    pub rate_out: f64,
}

/// The per-protocol table, shared by every connection of the host.
#[derive(Default)]
pub struct Bandwidth {
    protocols: Mutex<HashMap<String, Arc<Counters>>>,
    samples: Mutex<HashMap<String, Sample>>,
}

impl Bandwidth {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn counters(&self, protocol: &str) -> Arc<Counters> {
        let mut p = self.protocols.lock().expect("not poisoned");
        if let Some(c) = p.get(protocol) {
            return c.clone();
        }
        let key = if p.len() >= MAX_PROTOCOLS {
            "other"
        } else {
            protocol
        };
        p.entry(key.to_string()).or_default().clone()
    }

    /// Totals and rates by protocol, sorted by protocol id.
    pub fn snapshot(&self) -> Vec<ProtocolStats> {
        let now = Instant::now();
        let totals: Vec<(String, u64, u64)> = {
            let p = self.protocols.lock().expect("not poisoned");
            p.iter()
                .map(|(k, c)| {
                    (
                        k.clone(),
                        c.total_in.load(Ordering::Relaxed),
                        c.total_out.load(Ordering::Relaxed),
                    )
                })
                .collect()
        };
        let mut samples = self.samples.lock().expect("not poisoned");
        let mut out: Vec<ProtocolStats> = totals
            .into_iter()
            .map(|(protocol, total_in, total_out)| {
                let s = samples.entry(protocol.clone()).or_insert(Sample {
                    at: now,
                    total_in: 0,
                    total_out: 0,
                    rate_in: 0.0,
                    rate_out: 0.0,
                });
                let secs = now.duration_since(s.at).as_secs_f64();
                if secs >= 1.0 {
                    s.rate_in = total_in.saturating_sub(s.total_in) as f64 / secs;
                    s.rate_out = total_out.saturating_sub(s.total_out) as f64 / secs;
                    s.at = now;
                    s.total_in = total_in;
                    s.total_out = total_out;
                }
                ProtocolStats {
                    protocol,
                    total_in,
                    total_out,
                    rate_in: s.rate_in,
                    rate_out: s.rate_out,
                }
            })
            .collect();
        out.sort_by(|a, b| a.protocol.cmp(&b.protocol));
        out
    }
}

/// The `Transport.Bandwidth` answer.
pub fn to_proto(stats: Vec<ProtocolStats>) -> ipfs_cluster_proto::transport::v1::BandwidthResponse {
    ipfs_cluster_proto::transport::v1::BandwidthResponse {
        protocols: stats
            .into_iter()
            .map(|s| ipfs_cluster_proto::transport::v1::ProtocolBandwidth {
                protocol: s.protocol,
                total_in: s.total_in,
                total_out: s.total_out,
                rate_in: s.rate_in,
                rate_out: s.rate_out,
            })
            .collect(),
    }
}

/// A stream muxer whose substreams count their bytes into a [`Bandwidth`].
pub struct CountingMuxer<M> {
    inner: M,
    stats: Arc<Bandwidth>,
}

impl<M> CountingMuxer<M> {
    pub fn new(inner: M, stats: Arc<Bandwidth>) -> Self {
        Self { inner, stats }
    }
}

impl<M> StreamMuxer for CountingMuxer<M>
where
    M: StreamMuxer + Unpin,
    M::Substream: Unpin,
{
    type Substream = CountingStream<M::Substream>;
    type Error = M::Error;

    fn poll_inbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let s = ready!(Pin::new(&mut self.inner).poll_inbound(cx))?;
        // We are the listener: the negotiation answer is in what we write.
        Poll::Ready(Ok(CountingStream::new(s, self.stats.clone(), false)))
    }

    fn poll_outbound(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let s = ready!(Pin::new(&mut self.inner).poll_outbound(cx))?;
        // We are the dialer: the answer is in what we read.
        Poll::Ready(Ok(CountingStream::new(s, self.stats.clone(), true)))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        Pin::new(&mut self.inner).poll(cx)
    }
}

/// Learns the accepted protocol from the listener's multistream-select output.
#[derive(Default)]
struct Sniffer {
    buf: Vec<u8>,
}

enum Sniffed {
    More,
    Protocol(String),
    Unknown,
}

impl Sniffer {
    fn feed(&mut self, data: &[u8]) -> Sniffed {
        let room = MAX_SNIFF.saturating_sub(self.buf.len());
        self.buf.extend_from_slice(&data[..data.len().min(room)]);
        let mut pos = 0;
        loop {
            // unsigned varint length, then the message (ending in '\n').
            let mut len: usize = 0;
            let mut shift = 0;
            let mut i = pos;
            loop {
                let Some(&b) = self.buf.get(i) else {
                    return self.more_or_give_up();
                };
                len |= ((b & 0x7f) as usize) << shift;
                i += 1;
                if b & 0x80 == 0 {
                    break;
                }
                shift += 7;
                if shift > 14 {
                    return Sniffed::Unknown;
                }
            }
            if self.buf.len() < i + len {
                return self.more_or_give_up();
            }
            let msg = &self.buf[i..i + len];
            pos = i + len;
            let Some(msg) = msg.strip_suffix(b"\n") else {
                return Sniffed::Unknown;
            };
            match msg {
                b"/multistream/1.0.0" | b"na" => continue,
                m => {
                    return match std::str::from_utf8(m) {
                        Ok(s) if s.starts_with('/') => Sniffed::Protocol(s.to_string()),
                        _ => Sniffed::Unknown,
                    }
                }
            }
        }
    }

    fn more_or_give_up(&self) -> Sniffed {
        if self.buf.len() >= MAX_SNIFF {
            Sniffed::Unknown
        } else {
            Sniffed::More
        }
    }
}

/// A substream that counts its bytes (see the module comment).
pub struct CountingStream<S> {
    inner: S,
    stats: Arc<Bandwidth>,
    /// Whether the negotiation answer arrives in the bytes we read (we dialled).
    answer_in_reads: bool,
    sniffer: Option<Sniffer>,
    counters: Option<Arc<Counters>>,
    pending_in: u64,
    pending_out: u64,
}

impl<S> CountingStream<S> {
    fn new(inner: S, stats: Arc<Bandwidth>, answer_in_reads: bool) -> Self {
        Self {
            inner,
            stats,
            answer_in_reads,
            sniffer: Some(Sniffer::default()),
            counters: None,
            pending_in: 0,
            pending_out: 0,
        }
    }

    fn resolve(&mut self, protocol: &str) {
        let c = self.stats.counters(protocol);
        c.total_in.fetch_add(self.pending_in, Ordering::Relaxed);
        c.total_out.fetch_add(self.pending_out, Ordering::Relaxed);
        self.pending_in = 0;
        self.pending_out = 0;
        self.counters = Some(c);
        self.sniffer = None;
    }

    fn count(&mut self, data: &[u8], inbound: bool) {
        let n = data.len() as u64;
        if let Some(c) = &self.counters {
            if inbound {
                c.total_in.fetch_add(n, Ordering::Relaxed);
            } else {
                c.total_out.fetch_add(n, Ordering::Relaxed);
            }
            return;
        }
        if inbound {
            self.pending_in += n;
        } else {
            self.pending_out += n;
        }
        if inbound == self.answer_in_reads {
            if let Some(s) = self.sniffer.as_mut() {
                match s.feed(data) {
                    Sniffed::More => {}
                    Sniffed::Protocol(p) => self.resolve(&p),
                    Sniffed::Unknown => self.resolve(UNKNOWN),
                }
            }
        }
    }
}

impl<S> Drop for CountingStream<S> {
    fn drop(&mut self) {
        if self.counters.is_none() && (self.pending_in > 0 || self.pending_out > 0) {
            self.resolve(UNKNOWN);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CountingStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        self.count(&buf[..n], true);
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountingStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        self.count(&buf[..n], false);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(s: &str) -> Vec<u8> {
        let mut v = vec![(s.len() + 1) as u8];
        v.extend_from_slice(s.as_bytes());
        v.push(b'\n');
        v
    }

    #[test]
    fn sniffer_skips_header_and_refusals() {
        let mut s = Sniffer::default();
        let mut data = msg("/multistream/1.0.0");
        data.extend(msg("na"));
        assert!(matches!(s.feed(&data[..5]), Sniffed::More));
        assert!(matches!(s.feed(&data[5..]), Sniffed::More));
        match s.feed(&msg("/meshsub/1.1.0")) {
            Sniffed::Protocol(p) => assert_eq!(p, "/meshsub/1.1.0"),
            _ => panic!("protocol not found"),
        }
        let mut s = Sniffer::default();
        assert!(matches!(s.feed(b"\x03ab!"), Sniffed::Unknown));
    }

    #[test]
    fn streams_credit_their_protocol() {
        let stats = Bandwidth::new();
        let mut st = CountingStream::new((), stats.clone(), true);
        st.count(&[0u8; 10], false); // our proposal, before the answer
        let mut answer = msg("/multistream/1.0.0");
        answer.extend(msg("/ipfs/ping/1.0.0"));
        st.count(&answer, true);
        st.count(&[0u8; 32], true);
        drop(st);
        let snap = stats.snapshot();
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].protocol, "/ipfs/ping/1.0.0");
        assert_eq!(snap[0].total_out, 10);
        assert_eq!(snap[0].total_in, answer.len() as u64 + 32);
    }
}
