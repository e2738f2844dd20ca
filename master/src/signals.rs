//! SIGINT and SIGTERM: the first starts a graceful stop, a second exits at once.

/// Resolves after the first SIGINT or SIGTERM.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The first SIGINT/SIGTERM starts a graceful stop; a second one exits at once.
pub async fn shutdown_signal() {
    signal().await;
    eprintln!("stopping: collecting final reports (signal again to exit at once)");
    tokio::spawn(async {
        signal().await;
        eprintln!("second signal: exiting now");
        std::process::exit(130);
    });
}
