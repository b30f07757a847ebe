//! An axum server on its own thread and tokio runtime, so that it outlives the runtime of the
//! test that created it and can be created from sync or async code alike.

use std::net::SocketAddr;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

/// A running background server; dropping it stops the server and joins its thread.
#[derive(Debug)]
pub(crate) struct BackgroundServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl BackgroundServer {
    /// Binds `127.0.0.1:0` and serves `router` on a dedicated thread.
    ///
    /// Panics (naming `name`) if the socket or the runtime cannot be created.
    pub(crate) fn spawn(name: &str, router: axum::Router) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("{name}: cannot bind 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("{name}: cannot read the bound address: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("{name}: cannot make the socket non-blocking: {e}"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{name}: cannot build a tokio runtime: {e}"));
        let (tx, rx) = oneshot::channel::<()>();
        let thread_name = format!("{name}-{}", addr.port());
        let log_name = name.to_string();
        let thread = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            eprintln!("{log_name}: cannot register the listener: {e}");
                            return;
                        }
                    };
                    // Stopping drops the serve future: the listener closes at once and the
                    // connection tasks die with the runtime, even mid-response.
                    tokio::select! {
                        res = axum::serve(listener, router) => {
                            if let Err(e) = res {
                                eprintln!("{log_name}: server error: {e}");
                            }
                        }
                        _ = rx => {}
                    }
                });
                drop(runtime);
            })
            .unwrap_or_else(|e| panic!("{name}: cannot spawn the server thread: {e}"));
        BackgroundServer {
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// The bound address (`127.0.0.1:PORT`).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
