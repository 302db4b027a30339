//! Logging set-up: tracing to stdout, as text or JSON lines, filtered by RUST_LOG.
//!
//! Log lines carry ids, codes and outcomes, never request bodies: personal data
//! stays out of logs by construction (nothing logs a payload, and
//! `PrivacyRequest`'s `Debug` is redacted).

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG` overrides the default `info`.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    drop(result);
}
