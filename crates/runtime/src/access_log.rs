//! The HTTP access log of every HTTP endpoint a service serves (the REST API, the Pinning
//! Services API, the IPFS proxy), in Apache common log format as upstream's gorilla
//! `LoggingHandler`: to the configured file (appended, written by a background task
//! through a bounded queue so a slow disk never stalls requests) or, when unset, to
//! tracing at INFO under upstream's logger name (`restapilog`, `pinsvcapilog`,
//! `ipfsproxylog`).

use std::path::Path;

use http::{Method, Uri, Version};
use tokio::{io::AsyncWriteExt, sync::mpsc};

const QUEUE: usize = 1024;

/// Which endpoint a log is for: its tracing target and its configuration key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    RestApi,
    PinSvcApi,
    IpfsProxy,
}

impl Endpoint {
    /// Upstream's logger name, used as the tracing target.
    pub fn target(self) -> &'static str {
        match self {
            Endpoint::RestApi => "restapilog",
            Endpoint::PinSvcApi => "pinsvcapilog",
            Endpoint::IpfsProxy => "ipfsproxylog",
        }
    }

    /// The service.json key naming the log file.
    fn file_key(self) -> &'static str {
        match self {
            Endpoint::RestApi => "api.restapi.http_log_file",
            Endpoint::PinSvcApi => "api.pinsvcapi.http_log_file",
            Endpoint::IpfsProxy => "api.ipfsproxy.log_file",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Endpoint::RestApi => "REST API",
            Endpoint::PinSvcApi => "Pinning Services API",
            Endpoint::IpfsProxy => "IPFS proxy",
        }
    }
}

#[derive(Clone)]
pub struct AccessLog {
    endpoint: Endpoint,
    file: Option<mpsc::Sender<String>>,
}

impl AccessLog {
    /// Logs through tracing under the endpoint's target.
    pub fn tracing(endpoint: Endpoint) -> Self {
        Self {
            endpoint,
            file: None,
        }
    }

    /// Opens (creating, appending) `path` and starts the writer task.
    pub async fn file(endpoint: Endpoint, path: &Path) -> std::io::Result<Self> {
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "cannot open {} {}: {e}; fix the path or its permissions",
                        endpoint.file_key(),
                        path.display()
                    ),
                )
            })?;
        let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
        let p = path.display().to_string();
        tokio::spawn(async move {
            while let Some(line) = rx.recv().await {
                if let Err(e) = f.write_all(line.as_bytes()).await {
                    tracing::warn!(path = %p, error = %e, "cannot write the {} access log", endpoint.name());
                }
            }
            let _ = f.flush().await;
        });
        Ok(Self {
            endpoint,
            file: Some(tx),
        })
    }

    /// One request. `client` is the client's IP address, or the libp2p peer id for
    /// requests that came over `/libp2p-http` (as go-libp2p-http's RemoteAddr); `user` the
    /// Basic Auth user; `size` the body size when known (`-` otherwise).
    #[allow(clippy::too_many_arguments)]
    pub fn log(
        &self,
        client: &str,
        user: Option<&str>,
        method: &Method,
        uri: &Uri,
        version: Version,
        status: u16,
        size: Option<u64>,
    ) {
        let line = format_line(
            client,
            user,
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
                    tracing::warn!(
                        "{} access log queue is full; a line was dropped",
                        self.endpoint.name()
                    );
                }
            }
            None => {
                let l = line.trim_end();
                // tracing needs the target as a literal.
                match self.endpoint {
                    Endpoint::RestApi => tracing::info!(target: "restapilog", "{l}"),
                    Endpoint::PinSvcApi => tracing::info!(target: "pinsvcapilog", "{l}"),
                    Endpoint::IpfsProxy => tracing::info!(target: "ipfsproxylog", "{l}"),
                }
            }
        }
    }
}

/// `client - user [date] "METHOD target PROTO" status size`.
#[allow(clippy::too_many_arguments)]
fn format_line(
    client: &str,
    user: Option<&str>,
    method: &Method,
    uri: &Uri,
    version: Version,
    status: u16,
    size: Option<u64>,
    now: chrono::DateTime<chrono::Local>,
) -> String {
    let target = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let size = match size {
        Some(n) => n.to_string(),
        None => "-".to_string(),
    };
    format!(
        "{} - {} [{}] \"{} {} {:?}\" {} {}\n",
        client,
        user.filter(|u| !u.is_empty()).unwrap_or("-"),
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

    fn at() -> chrono::DateTime<chrono::Local> {
        chrono::DateTime::parse_from_rfc3339("2000-10-10T13:55:36-07:00")
            .unwrap()
            .with_timezone(&chrono::Local)
    }

    #[test]
    fn common_log_format() {
        let l = format_line(
            "127.0.0.1",
            Some("frank"),
            &Method::GET,
            &"/pins?local=true".parse().unwrap(),
            Version::HTTP_11,
            200,
            Some(2326),
            at(),
        );
        assert!(l.starts_with("127.0.0.1 - frank ["), "{l}");
        assert!(
            l.ends_with("] \"GET /pins?local=true HTTP/1.1\" 200 2326\n"),
            "{l}"
        );
        let l = format_line(
            "127.0.0.1",
            None,
            &Method::POST,
            &"/api/v0/pin/ls?arg=x".parse().unwrap(),
            Version::HTTP_11,
            200,
            None,
            at(),
        );
        assert!(l.starts_with("127.0.0.1 - - ["), "{l}");
        assert!(
            l.ends_with("] \"POST /api/v0/pin/ls?arg=x HTTP/1.1\" 200 -\n"),
            "{l}"
        );
    }

    #[tokio::test]
    async fn file_is_appended() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("proxy.log");
        std::fs::write(&p, "old\n").unwrap();
        let l = AccessLog::file(Endpoint::IpfsProxy, &p).await.unwrap();
        l.log(
            "127.0.0.1",
            None,
            &Method::GET,
            &"/api/v0/version".parse().unwrap(),
            Version::HTTP_11,
            200,
            Some(5),
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

    #[tokio::test]
    async fn an_unopenable_file_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let Err(e) = AccessLog::file(Endpoint::RestApi, &dir.path().join("no/such/f")).await else {
            panic!("opened a file in a missing folder");
        };
        assert!(e.to_string().contains("api.restapi.http_log_file"), "{e}");
    }
}
