//! Graceful shutdown: on SIGTERM or SIGINT (Ctrl-C) the server stops
//! accepting connections, finishes the requests in flight, and exits; past
//! the grace period it exits anyway.

/// Resolves when the process receives SIGTERM or SIGINT. Both are listened
/// for when this is called, not when the future is first polled, so a
/// signal sent once it has returned never takes the default action (ending
/// the process at once). Call it inside a tokio runtime.
pub fn signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let listen = |kind: SignalKind, name: &'static str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for {name}");
                None
            }
        };
        let (term, int) =
            (listen(SignalKind::terminate(), "SIGTERM"), listen(SignalKind::interrupt(), "SIGINT"));
        async move {
            let received = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = received(int) => tracing::info!("SIGINT received; finishing requests in flight"),
                () = received(term) => tracing::info!("SIGTERM received; finishing requests in flight"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!("Ctrl-C received; finishing requests in flight");
    }
}
