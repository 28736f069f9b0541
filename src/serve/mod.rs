//! `tag-space serve`: the bulk-tagging HTTP service.
//!
//! ```text
//! POST /bulk/tag-space/{space} ─► Service::start ─► queued ─(a task slot)─► running
//!      TaskRunner::run (the pipeline, over the ONE provider chain shared by every task)
//!      ─► TaskEvents ─► the task's summary and event log ─► GET .../{id}, .../events
//! POST /bulk/tasks/{id}/stop, SIGTERM ─► the task's cancellation token (as Ctrl-C)
//! ```
//!
//! Tasks are recorded in the state file (`serve_tasks`), so they outlive a restart. The
//! routes are in [`api`], the token check in [`auth`], `/metrics` in [`metrics`].

pub mod api;
pub mod auth;
pub mod metrics;
pub mod runner;
pub mod service;
pub mod task;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use runner::{Mode, RunEnd, TaskRequest, TaskRunner};
pub use service::{Service, ServiceSettings};
pub use task::{PageDetail, Summary, TaskEvent, TaskEvents, TaskStatus};

use crate::secret::Secret;

/// Why the service does not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "refusing to listen on {addr} without a token: a non-loopback address lets anyone on the network start tagging; set TAG_SPACE_SERVE_TOKEN, or bind 127.0.0.1"
    )]
    OpenWithoutToken { addr: SocketAddr },
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A non-loopback address needs a token.
pub fn check_bind(addr: SocketAddr, token: Option<&Secret>) -> Result<(), ServeError> {
    if token.is_none() && !addr.ip().is_loopback() {
        return Err(ServeError::OpenWithoutToken { addr });
    }
    Ok(())
}

/// Checks the address, then listens on it.
pub async fn bind(addr: SocketAddr, token: Option<&Secret>) -> Result<TcpListener, ServeError> {
    check_bind(addr, token)?;
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Serves until `shutdown` fires; then takes no new connection, interrupts the running
/// tasks (each gets its grace), records them and returns once open requests are answered
/// (event streams end with their task).
pub async fn serve(
    listener: TcpListener,
    service: Arc<Service>,
    token: Option<Secret>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = api::router(service.clone(), token);
    // The tasks stop beside the server: open requests (`?wait=true`, event streams) end
    // with their task, and the server waits for them.
    let stopper = {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            service.shutdown().await;
        })
    };
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await;
    shutdown.cancel();
    let _ = stopper.await;
    served
}
