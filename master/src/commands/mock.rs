//! `barrage mock`: serve the dify-api double ([`barrage_mock`]) until a signal.

use anyhow::Context;
use tokio::net::TcpListener;

use crate::cli::MockArgs;
use crate::signals::signal;

/// Runs `barrage mock` until SIGINT/SIGTERM; 0 unless the address cannot be bound.
pub(super) async fn command(args: MockArgs) -> anyhow::Result<u8> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    println!(
        "barrage mock: dify-api double on http://{} (ground truth: GET /_mock/stats)",
        listener.local_addr()?
    );
    barrage_mock::run(barrage_mock::MockState::new(args.config), listener, signal()).await?;
    Ok(0)
}
