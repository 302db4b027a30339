//! A TCP proxy of the tests' own, put between the worker and RabbitMQ or
//! PostgreSQL so a test can cut the connection at a moment of its choosing and
//! restore it, without touching the machine's services.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Forwards every connection to `upstream` until cut.
pub struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    generation: Arc<watch::Sender<u64>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(watch::Sender::new(0u64));
        let accept = tokio::spawn({
            let cut = cut.clone();
            let generation = generation.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        drop(client); // refused: closed at once
                        continue;
                    }
                    let mut killed = generation.subscribe();
                    tokio::spawn(async move {
                        let Ok(mut server) = TcpStream::connect(upstream).await else {
                            return;
                        };
                        let mut client = client;
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = killed.changed() => {}
                        }
                    });
                }
            }
        });
        Self {
            port,
            cut,
            generation,
            accept,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Drops every open connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.generation.send_modify(|g| *g += 1);
    }
}

/// `url` with its port (and host) replaced by the proxy's.
pub fn via_proxy(url: &str, proxy: &Proxy) -> String {
    let (scheme, rest) = url.split_once("://").expect("URL has a scheme");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (credentials, _) = authority
        .rsplit_once('@')
        .map_or(("", authority), |(c, h)| (c, h));
    let at = if credentials.is_empty() { "" } else { "@" };
    format!(
        "{scheme}://{credentials}{at}127.0.0.1:{}/{path}",
        proxy.port()
    )
}

/// The host:port a URL points at.
pub fn upstream_of(url: &str) -> SocketAddr {
    let rest = url.split_once("://").expect("scheme").1;
    let authority = rest.split('/').next().unwrap();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5672")
    };
    let host_port = host_port.replace("localhost", "127.0.0.1");
    host_port.parse().expect("a numeric host:port")
}
