//! A TCP proxy to the database that can stall: while stalled, it keeps its connections open
//! but passes nothing on, as a network that drops everything would.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The proxy; its task stops when it is dropped.
pub struct Proxy {
    /// The database URL through the proxy.
    pub url: String,
    stalled: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on 127.0.0.1 for connections to the database at `url`; `self.url` is `url`
    /// through the proxy.
    pub async fn start(url: &str) -> Self {
        let port = url
            .split("@127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .expect("a URL of the test server");
        let upstream = format!("127.0.0.1:{port}");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let local = listener.local_addr().unwrap();
        let stalled = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let stalled = Arc::clone(&stalled);
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let (upstream, stalled) = (upstream.clone(), Arc::clone(&stalled));
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(&upstream).await else {
                            return;
                        };
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        tokio::spawn(pipe(cr, sw, Arc::clone(&stalled)));
                        pipe(sr, cw, stalled).await;
                    });
                }
            }
        });
        Self {
            url: url.replacen(&format!("127.0.0.1:{port}"), &local.to_string(), 1),
            stalled,
            task,
        }
    }

    /// Stops (`true`) or resumes passing data on.
    pub fn stall(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, holding each chunk back while `stalled`.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Arc<AtomicBool>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        while stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while stalled.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}
