//! The proxy's access log in Apache common log format, as upstream's gorilla
//! `LoggingHandler` (same idea as the gateway's): to `api.ipfsproxy.log_file` (appended,
//! written by a background task through a bounded queue so a slow disk never stalls
//! requests) or, when unset, to tracing target `ipfsproxylog` at INFO.

use std::{net::SocketAddr, path::Path};

use http::{Method, Uri, Version};
use tokio::{io::AsyncWriteExt, sync::mpsc};

const QUEUE: usize = 1024;

#[derive(Clone, Default)]
pub struct AccessLog {
    file: Option<mpsc::Sender<String>>,
}

impl AccessLog {
    /// Logs through tracing (`ipfsproxylog`).
    pub fn tracing() -> Self {
        Self { file: None }
    }

    /// Opens (creating, appending) `path` and starts the writer task.
    pub async fn file(path: &Path) -> std::io::Result<Self> {
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "cannot open api.ipfsproxy.log_file {}: {e}; fix the path or its permissions",
                        path.display()
                    ),
                )
            })?;
        let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
        let p = path.display().to_string();
        tokio::spawn(async move {
            while let Some(line) = rx.recv().await {
                if let Err(e) = f.write_all(line.as_bytes()).await {
                    tracing::warn!(path = %p, error = %e, "cannot write the IPFS proxy access log");
                }
            }
            let _ = f.flush().await;
        });
        Ok(Self { file: Some(tx) })
    }

    pub fn log(
        &self,
        remote: SocketAddr,
        method: &Method,
        uri: &Uri,
        version: Version,
        status: u16,
        size: u64,
    ) {
        let line = format_line(
            remote,
            method,
            uri,
            version,
            status,
            size,
            chrono::Local::now(),
        );
        match &self.file {
            Some(tx) => {
                if tx.try_send(line).is_err() {
                    tracing::warn!("IPFS proxy access log queue is full; a line was dropped");
                }
            }
            None => tracing::info!(target: "ipfsproxylog", "{}", line.trim_end()),
        }
    }
}

/// `host - - [date] "METHOD target PROTO" status size` (no user: the proxy has no auth).
fn format_line(
    remote: SocketAddr,
    method: &Method,
    uri: &Uri,
    version: Version,
    status: u16,
    size: u64,
    now: chrono::DateTime<chrono::Local>,
) -> String {
    let target = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    format!(
        "{} - - [{}] \"{} {} {:?}\" {} {}\n",
        remote.ip(),
        now.format("%d/%b/%Y:%H:%M:%S %z"),
        method,
        target,
        version,
        status,
        size
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_log_format() {
        let t = chrono::DateTime::parse_from_rfc3339("2000-10-10T13:55:36-07:00")
            .unwrap()
            .with_timezone(&chrono::Local);
        let l = format_line(
            "127.0.0.1:5000".parse().unwrap(),
            &Method::POST,
            &"/api/v0/pin/ls?arg=x".parse().unwrap(),
            Version::HTTP_11,
            200,
            2326,
            t,
        );
        assert!(l.starts_with("127.0.0.1 - - ["), "{l}");
        assert!(
            l.ends_with("] \"POST /api/v0/pin/ls?arg=x HTTP/1.1\" 200 2326\n"),
            "{l}"
        );
    }

    #[tokio::test]
    async fn file_is_appended() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("proxy.log");
        std::fs::write(&p, "old\n").unwrap();
        let l = AccessLog::file(&p).await.unwrap();
        l.log(
            "127.0.0.1:1".parse().unwrap(),
            &Method::GET,
            &"/api/v0/version".parse().unwrap(),
            Version::HTTP_11,
            200,
            5,
        );
        drop(l);
        for _ in 0..100 {
            let text = std::fs::read_to_string(&p).unwrap();
            if text.lines().count() == 2 {
                assert!(text.starts_with("old\n127.0.0.1 - - ["), "{text}");
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the line never reached the file");
    }
}
