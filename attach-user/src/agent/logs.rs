//! The eBPF programs' own log lines (aya-log), read from the node's pinned
//! log buffer and logged through `tracing` with everything else.

use std::path::PathBuf;

use tokio::io::unix::AsyncFd;

pub async fn bridge(pin_dir: PathBuf) {
    loop {
        match open(&pin_dir) {
            Ok((logger, _dp)) => {
                tracing::debug!("bridging the programs' logs");
                // SAFETY: the logger owns its ring buffer fd for as long as
                // the AsyncFd holds the logger.
                let Ok(mut fd) = (unsafe { AsyncFd::register(logger) }) else {
                    return;
                };
                loop {
                    let Ok(mut guard) = fd.readable_mut().await else {
                        break;
                    };
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
            }
            Err(e) => tracing::debug!("programs' logs not available yet: {e}"),
        }
        // No datapath on this node yet (no pins): look again later.
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    }
}

type Logger = aya_log::EbpfLogger<&'static dyn log::Log>;

fn open(pin_dir: &std::path::Path) -> crate::Result<(Logger, crate::datapath::Datapath)> {
    if !pin_dir.join(crate::datapath::LOG_PIN).exists() {
        return Err(crate::Error::not_found("no datapath pinned yet"));
    }
    let mut dp = crate::datapath::Datapath::open(pin_dir)?;
    let logger = dp.logger()?;
    Ok((logger, dp))
}
