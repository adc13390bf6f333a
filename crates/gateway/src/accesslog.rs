//! Access log in Apache common log format, as upstream's handlers.LoggingHandler: to
//! `http_log_file` (appended, written by a background task through a bounded queue so a
//! slow disk never stalls requests) or, when unset, to tracing at INFO.

use std::path::Path;

use http::{Method, StatusCode, Uri, Version};
use tokio::{io::AsyncWriteExt, sync::mpsc};

const QUEUE: usize = 1024;

#[derive(Clone)]
pub struct AccessLog {
    target: &'static str,
    file: Option<mpsc::Sender<String>>,
}

impl AccessLog {
    /// Logs through tracing with the given target (`restapilog`, `pinsvcapilog`).
    pub fn tracing(target: &'static str) -> Self {
        Self { target, file: None }
    }

    /// Opens (creating, appending) `path` and starts the writer task.
    pub async fn file(target: &'static str, path: &Path) -> std::io::Result<Self> {
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot open http_log_file {}: {e}", path.display()),
                )
            })?;
        let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
        let p = path.display().to_string();
        tokio::spawn(async move {
            while let Some(line) = rx.recv().await {
                if let Err(e) = f.write_all(line.as_bytes()).await {
                    tracing::warn!(path = %p, error = %e, "cannot write the HTTP access log");
                }
            }
            let _ = f.flush().await;
        });
        Ok(Self {
            target,
            file: Some(tx),
        })
    }

    #[allow(clippy::too_many_arguments)]
    /// `client` is the client's IP address, or the libp2p peer id for requests that came
    /// over `/libp2p-http` (as go-libp2p-http's RemoteAddr).
    pub fn log(
        &self,
        client: &str,
        user: Option<&str>,
        method: &Method,
        uri: &Uri,
        version: Version,
        status: StatusCode,
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
                    tracing::warn!("HTTP access log queue is full; a line was dropped");
                }
            }
            None => {
                let l = line.trim_end();
                if self.target == "pinsvcapilog" {
                    tracing::info!(target: "pinsvcapilog", "{l}");
                } else {
                    tracing::info!(target: "restapilog", "{l}");
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn format_line(
    client: &str,
    user: Option<&str>,
    method: &Method,
    uri: &Uri,
    version: Version,
    status: StatusCode,
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
        status.as_u16(),
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
            "127.0.0.1",
            Some("frank"),
            &Method::GET,
            &"/pins?local=true".parse().unwrap(),
            Version::HTTP_11,
            StatusCode::OK,
            Some(2326),
            t,
        );
        assert!(l.starts_with("127.0.0.1 - frank ["), "{l}");
        assert!(
            l.ends_with("] \"GET /pins?local=true HTTP/1.1\" 200 2326\n"),
            "{l}"
        );
    }
}
