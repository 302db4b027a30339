//! Command line and environment, parsed by clap and turned into plain settings.
//!
//! Every option has an environment variable (see README and `.env.example`), so
//! the defaults reach `docker compose up` on localhost and a deployment sets only
//! what differs.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod commands;

pub use commands::{
    DatamapAction, DatamapArgs, DlqAction, DlqArgs, LedgerAction, LedgerArgs, RequestsAction,
    RequestsArgs, StoreArgs,
};

use crate::amqp::Topology;
use crate::fulfil::FulfilSettings;
use crate::protocol::Limits;
use crate::settings::{BrokerSettings, IntakeSettings, ObservabilitySettings, WorkerSettings};
use crate::store::StoreSettings;

/// Default broker: the docker-compose RabbitMQ.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Takes GDPR data-subject requests from RabbitMQ, records them and answers each
/// with a request id.
#[derive(Debug, Parser)]
#[command(
    name = "privacy-worker",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do; `run` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `run`, accepted without the subcommand too.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the worker in the foreground until SIGTERM or SIGINT (the default).
    Run(Box<RunArgs>),
    /// Publish a sample GetDataPrivacyStatusRequest and print the reply.
    Send(SendArgs),
    /// Inspect or replay the messages parked in the dead queue.
    Dlq(DlqArgs),
    /// Look at requests, revoke one, read its audit trail (operators).
    Requests(RequestsArgs),
    /// Check the data map against the customer databases, without starting.
    Datamap(DatamapArgs),
    /// Apply the erasure ledger again, after a customer database was restored.
    Ledger(LedgerArgs),
    /// Create a key file with fresh random keys (owner-only); refuses to overwrite.
    Keygen {
        /// Where to write it, e.g. /etc/privacy-worker/keys.json.
        path: std::path::PathBuf,
    },
}

/// Where the broker is.
#[derive(Debug, Clone, Args)]
pub struct BrokerArgs {
    /// AMQP URL of RabbitMQ.
    #[arg(long, env = "AMQP_URL", default_value = DEFAULT_AMQP_URL)]
    pub amqp_url: String,
    /// Topic exchange requests arrive on and replies leave by.
    #[arg(long, env = "LCM_EXCHANGE", default_value = "lcm")]
    pub exchange: String,
}

/// Options of `run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// `sqlite://file.db` (created when missing) or `postgres://user:pass@host/db`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://privacy-worker.db"
    )]
    pub database_url: String,
    /// PostgreSQL connection pool size.
    #[arg(long, env = "DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,
    /// Work queue (a quorum queue).
    #[arg(long, env = "PRIVACY_QUEUE", default_value = "lcm.privacy.requests")]
    pub queue: String,
    /// Queue where invalid messages are parked.
    #[arg(
        long,
        env = "PRIVACY_INVALID_QUEUE",
        default_value = "lcm.privacy.invalid"
    )]
    pub invalid_queue: String,
    /// Queue where messages go after all retries for infrastructure failures.
    #[arg(long, env = "PRIVACY_DEAD_QUEUE", default_value = "lcm.privacy.dead")]
    pub dead_queue: String,
    /// Routing keys bound to the work queue, comma-separated.
    #[arg(long, env = "PRIVACY_BINDINGS", value_delimiter = ',',
          default_values_t = Topology::default_bindings())]
    pub bindings: Vec<String>,
    /// Unacknowledged deliveries in flight at once (AMQP prefetch).
    #[arg(long, env = "PRIVACY_PREFETCH", default_value_t = 256)]
    pub prefetch: u16,
    /// Deliveries recorded in one transaction at most (group commit); 1 turns it off.
    #[arg(long, env = "PRIVACY_BATCH_MAX", default_value_t = 64)]
    pub batch_max: usize,
    /// Batches being handled at once; deliveries arriving while all are busy
    /// gather into the next batch, which starts anyway once it is full.
    #[arg(long, env = "PRIVACY_BATCHES_IN_FLIGHT", default_value_t = 2,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub batches_in_flight: u16,
    /// Larger bodies are refused unread.
    #[arg(long, env = "PRIVACY_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,
    /// Redeliveries after which the broker dead-letters a message by itself.
    #[arg(long, env = "PRIVACY_DELIVERY_LIMIT", default_value_t = 20)]
    pub delivery_limit: u32,
    /// Attempts a message gets (the first included) before it is parked as dead;
    /// attempts during a database outage do not count.
    #[arg(long, env = "PRIVACY_RETRY_ATTEMPTS", default_value_t = 5)]
    pub retry_attempts: u32,
    /// Delay tiers of the retry queues, e.g. `1s,5s,30s` (units ms, s, m).
    #[arg(long, env = "PRIVACY_RETRY_DELAYS", value_delimiter = ',',
          value_parser = parse_delay, default_value = "1s,5s,30s")]
    pub retry_delays: Vec<Duration>,
    /// Seconds to finish in-flight messages after SIGTERM.
    #[arg(long, env = "PRIVACY_DRAIN_SECS", default_value_t = 30)]
    pub drain_secs: u64,
    /// How long a publish waits for the broker's confirm before the delivery is
    /// handed back for another attempt (a memory alarm blocks publishers).
    #[arg(long, env = "PRIVACY_CONFIRM_TIMEOUT", value_parser = parse_delay, default_value = "30s")]
    pub confirm_timeout: Duration,
    /// How long copies parked in the invalid and dead queues are kept before the
    /// broker drops them (they hold the request's personal data in plain text).
    #[arg(long, env = "PRIVACY_PARKED_TTL", value_parser = parse_delay, default_value = "14d")]
    pub parked_ttl: Duration,
    /// Connection name shown in the RabbitMQ management UI.
    #[arg(
        long,
        env = "PRIVACY_CONNECTION_NAME",
        default_value = "privacy-worker"
    )]
    pub connection_name: String,
    /// The `source` of replies.
    #[arg(long, env = "PRIVACY_REPLY_SOURCE", default_value = "privacy-worker")]
    pub reply_source: String,
    /// Tenant that LCM requests belong to.
    #[arg(long, env = "LCM_TENANT", default_value = "default")]
    pub tenant: String,
    /// Tenants (tenant_hash values) RCDP requests may name, comma-separated;
    /// empty accepts any.
    #[arg(long, env = "PRIVACY_TENANTS", value_delimiter = ',')]
    pub tenants: Vec<String>,
    /// Key file for personal data at rest (JSON, see README). Default: next to the
    /// SQLite database, created on first run; required with PostgreSQL.
    #[arg(long, env = "PRIVACY_KEY_FILE")]
    pub key_file: Option<std::path::PathBuf>,
    /// The data map of the customer databases (YAML); without one, requests are
    /// taken and answered but none is fulfilled.
    #[arg(long, env = "PRIVACY_DATAMAP")]
    pub datamap: Option<std::path::PathBuf>,
    /// How long after registration a request falls due (its revocation window);
    /// `0s` fulfils at once.
    #[arg(long, env = "PRIVACY_FULFIL_DELAY", value_parser = parse_delay, default_value = "1h")]
    pub fulfil_delay: Duration,
    /// How long a claim on a request holds without a heartbeat (every third of
    /// it); an instance that dies loses its claims after this.
    #[arg(long, env = "PRIVACY_FULFIL_LEASE", value_parser = parse_delay, default_value = "60s")]
    pub fulfil_lease: Duration,
    /// Attempts a request's fulfilment gets before it is failed.
    #[arg(long, env = "PRIVACY_FULFIL_ATTEMPTS", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub fulfil_attempts: u32,
    /// Where access archives go: `file:///some/dir` (or `file://./relative/dir`),
    /// or `s3://bucket/prefix` (the usual AWS_* variables; AWS_ENDPOINT_URL for
    /// MinIO or a test server).
    #[arg(
        long,
        env = "PRIVACY_EXPORT_URL",
        default_value = "file://./privacy-exports"
    )]
    pub export_url: String,
    /// How long an S3 download link (a presigned GET) is valid.
    #[arg(long, env = "PRIVACY_EXPORT_LINK_TTL", value_parser = parse_delay, default_value = "7d")]
    pub export_link_ttl: Duration,
    /// Address of the HTTP listener (/metrics, /healthz, /readyz); empty turns it off.
    #[arg(long, env = "PRIVACY_HTTP_ADDR", value_parser = parse_listen, default_value = "127.0.0.1:9464")]
    pub http_addr: Listen,
    /// How long after registration a request must be answered (its `due_by`).
    #[arg(long, env = "PRIVACY_RESPONSE_DEADLINE", value_parser = parse_delay, default_value = "30d")]
    pub response_deadline: Duration,
}

/// A listening address, or none (the empty value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen(pub Option<std::net::SocketAddr>);

/// `127.0.0.1:9464`, `[::]:9464`; empty turns the listener off.
fn parse_listen(text: &str) -> Result<Listen, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Listen(None));
    }
    text.parse()
        .map(|addr| Listen(Some(addr)))
        .map_err(|_| format!("{text:?} is not an address like 127.0.0.1:9464 (empty turns it off)"))
}

impl RunArgs {
    /// The worker's settings.
    pub fn settings(&self) -> WorkerSettings {
        WorkerSettings {
            broker: BrokerSettings {
                amqp_url: self.broker.amqp_url.clone(),
                connection_name: self.connection_name.clone(),
                confirm_timeout: self.confirm_timeout,
            },
            store: StoreSettings {
                url: self.database_url.clone(),
                max_connections: self.db_max_connections,
                acquire_timeout: Duration::from_secs(5),
            },
            prefetch: self.prefetch.max(1),
            batch_max: self.batch_max.max(1),
            batches_in_flight: usize::from(self.batches_in_flight),
            drain_timeout: Duration::from_secs(self.drain_secs),
            tenant: self.tenant.clone(),
            key_file: self.key_file.clone(),
            datamap: self.datamap.clone(),
            export_url: self.export_url.clone(),
            export_link_ttl: self.export_link_ttl,
            fulfil: FulfilSettings {
                delay: self.fulfil_delay,
                attempts: self.fulfil_attempts,
                lease: self.fulfil_lease.max(Duration::from_secs(1)),
                poll: Duration::from_secs(1),
                retry_backoff: Duration::from_secs(2),
            },
            intake: IntakeSettings {
                topology: Topology {
                    exchange: self.broker.exchange.clone(),
                    work_queue: self.queue.clone(),
                    invalid_queue: self.invalid_queue.clone(),
                    dead_queue: self.dead_queue.clone(),
                    bindings: self.bindings.clone(),
                    delivery_limit: self.delivery_limit,
                    retry_delays: self.retry_delays.clone(),
                },
                limits: Limits {
                    max_body_bytes: self.max_body_bytes,
                },
                tenants: self
                    .tenants
                    .iter()
                    .filter(|t| !t.is_empty())
                    .cloned()
                    .collect(),
                retry_attempts: self.retry_attempts.max(1),
                reply_source: self.reply_source.clone(),
                parked_ttl: self.parked_ttl,
            },
            observability: ObservabilitySettings {
                http_addr: self.http_addr.0,
                response_deadline: self.response_deadline,
            },
        }
    }
}

/// Options of `send`.
#[derive(Debug, Clone, Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Which sample to send: the seed's sample (`message`, `WebService`, `callid`)
    /// or the documentation table's form (`data`, `Webservice`, `CallId`).
    #[arg(long, value_enum, default_value_t = SampleForm::Sample)]
    pub form: SampleForm,
    /// Send this file's envelope instead of a built-in sample.
    #[arg(long)]
    pub file: Option<std::path::PathBuf>,
    /// Routing key to publish with.
    #[arg(long, default_value = "LCM.WebService.GetDataPrivacyStatusRequest")]
    pub routing_key: String,
    /// Seconds to wait for the reply.
    #[arg(long, default_value_t = 10)]
    pub timeout_secs: u64,
}

/// Built-in sample requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SampleForm {
    /// The seed document's sample request, verbatim.
    Sample,
    /// The documentation table's spelling.
    Table,
}

/// `500ms`, `5s`, `2m`, `12h`, `14d`.
fn parse_delay(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |at| text.split_at(at));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a delay like 500ms, 5s or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        "d" => Ok(Duration::from_secs(n * 86_400)),
        _ => Err(format!("{text:?} needs a unit: ms, s, m, h or d")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_read_with_their_unit() {
        assert_eq!(parse_delay("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_delay("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_delay("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_delay("14d"), Ok(Duration::from_secs(14 * 86_400)));
        assert!(parse_delay("5").is_err());
        assert!(parse_delay("fast").is_err());
    }

    #[test]
    fn an_empty_http_address_turns_the_listener_off() {
        let run = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["privacy-worker", "run"], args].concat()).unwrap();
            match cli.command {
                Some(Command::Run(run)) => run.settings().observability.http_addr,
                _ => unreachable!("run was given"),
            }
        };
        assert_eq!(run(&["--http-addr", ""]), None);
        assert_eq!(
            run(&["--http-addr", "0.0.0.0:9100"]),
            Some("0.0.0.0:9100".parse().unwrap())
        );
        assert!(parse_listen("localhost").is_err());
    }
}
