//! The health listener (`--health-addr`): `/healthz`, `/readyz` and `/metrics` on an
//! address of their own, answered by a thread running a runtime of its own.
//!
//! On the API's address health checks skip admission, but they still wait in the API
//! runtime's queue behind every other connection: under overload, for as long as the
//! requests that are shed. Here they wait for nothing the API does; the thread is
//! mostly asleep, so the OS runs it as soon as a probe arrives. Anything else asked
//! here is 404. At most `health_connections` connections are open at once; more are
//! closed at accept.
//!
//! Thread-safety contract: the thread shares the server's `Arc<AppState>` (the same
//! handlers, metrics and store as the API); it is stopped and joined by
//! [`HealthServer::stop`] (or on drop) before the server returns.

use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

use super::admission::ArrivalClock;
use super::connections::{Admit, ConnectionLimiter};
use super::handlers::AppState;
use super::{ConnKind, Connection, log_connection_end, serve_connection};

/// The running health listener.
#[derive(Debug)]
pub struct HealthServer {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HealthServer {
    /// Serves health checks on `listener` from a new thread.
    pub fn start(state: Arc<AppState>, listener: std::net::TcpListener) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "serving health checks");
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("featstore-health".into())
            .spawn(move || runtime.block_on(serve(state, listener, stopped)))?;
        Ok(HealthServer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops accepting, closes its connections and joins the thread.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            // The thread may have ended already (a failed listener): nothing to stop.
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("health listener thread panicked");
        }
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.shut_down();
    }
}

async fn serve(
    state: Arc<AppState>,
    listener: std::net::TcpListener,
    mut stopped: oneshot::Receiver<()>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(error = %e, "health listener unusable; health checks only on the API address");
            return;
        }
    };
    let limiter = ConnectionLimiter::new(state.config.health_connections, 0);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let Admit::Serve(open) = limiter.admit() else {
                        state.metrics.observe_connection_refused();
                        continue;
                    };
                    let connection = Connection {
                        state: state.clone(),
                        clock: ArrivalClock::detached(),
                        open,
                        kind: ConnKind::HealthListener,
                    };
                    connections.spawn(serve_connection(connection, stream, stop_rx.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "health listener accept failed");
                    tokio::time::sleep(super::ACCEPT_BACKOFF).await;
                }
            },
        }
        while let Some(done) = connections.try_join_next() {
            log_connection_end(done);
        }
    }
    // Receivers only wait for `true`, so a send error (no connection left) is harmless.
    let _ = stop_tx.send(true);
    connections.shutdown().await;
}
