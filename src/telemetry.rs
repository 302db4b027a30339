//! Logging set-up: tracing to stdout, as text or JSON lines, filtered by RUST_LOG.
//!
//! Log lines carry ids, codes and outcomes, never request bodies: personal data
//! stays out of logs by construction (nothing logs a payload, and
//! `PrivacyRequest`'s `Debug` is redacted). The AMQP client is the exception we
//! do not control: at trace level lapin logs every frame, bodies and headers
//! (`reqParamValue`) included, so its level is capped at debug whatever
//! `RUST_LOG` says.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The crates that see message bodies, and the most they may log.
const CAPPED: [(&str, LevelFilter); 2] = [
    ("lapin", LevelFilter::DEBUG),
    ("amq_protocol", LevelFilter::DEBUG),
];

/// A filter that lets everything through but the capped crates' finer levels.
pub fn personal_data_cap() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_targets(CAPPED)
}

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG` overrides the default `info`.
/// The worker logs to stdout; commands whose stdout is their answer (`requests`,
/// `dlq`, `send`) log to stderr.
pub fn init(format: LogFormat, to_stderr: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = BoxMakeWriter::new(move || -> Box<dyn std::io::Write> {
        if to_stderr {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::stdout())
        }
    });
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    let layer = match format {
        LogFormat::Text => layer.boxed(),
        LogFormat::Json => layer.json().flatten_event(true).boxed(),
    };
    let result = tracing_subscriber::registry()
        .with(layer.with_filter(filter).with_filter(personal_data_cap()))
        .try_init();
    // A second init (tests) keeps the first subscriber.
    drop(result);
}
