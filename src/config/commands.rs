//! The options of the operator commands: `datamap`, `requests`, `ledger` and `dlq`.

use clap::{Args, Subcommand};

use super::BrokerArgs;

/// Options of `datamap`.
#[derive(Debug, Clone, Args)]
pub struct DatamapArgs {
    #[command(subcommand)]
    pub action: DatamapAction,
}

/// What to do with the data map.
#[derive(Debug, Clone, Subcommand)]
pub enum DatamapAction {
    /// Connect to each database, check every table, key, match and via column,
    /// and print what each table would export.
    Check {
        /// The data map (YAML).
        #[arg(long, env = "PRIVACY_DATAMAP")]
        datamap: std::path::PathBuf,
    },
}

/// The store an operator command works on, and its keys, as for `run`.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// The store, as for `run`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://privacy-worker.db"
    )]
    pub database_url: String,
    /// Key file, as for `run` (needed by `requests show --reveal`, and by
    /// `ledger replay`, whose pseudonym key rewrites columns that may not be NULL).
    #[arg(long, env = "PRIVACY_KEY_FILE")]
    pub key_file: Option<std::path::PathBuf>,
}

/// Options of `ledger`.
#[derive(Debug, Clone, Args)]
pub struct LedgerArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The data map, as for `run`.
    #[arg(long, env = "PRIVACY_DATAMAP")]
    pub datamap: std::path::PathBuf,
    #[command(subcommand)]
    pub action: LedgerAction,
}

/// What to do with the erasure ledger.
#[derive(Debug, Clone, Subcommand)]
pub enum LedgerAction {
    /// Apply every recorded erasure again (after a customer database was
    /// restored from a backup): the same rows are deleted or rewritten again;
    /// a second run changes nothing.
    Replay {
        /// Only this database of the data map.
        #[arg(long)]
        database: Option<String>,
        /// Only erasures done at or after this time (RFC 3339, e.g. 2026-11-01T00:00:00Z).
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
    },
}

/// Options of `requests`.
#[derive(Debug, Clone, Args)]
pub struct RequestsArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Who is acting, for the audit trail.
    #[arg(long, env = "PRIVACY_OPERATOR", default_value = "operator")]
    pub operator: String,
    /// The response deadline, as for `run` (each request's `due_by`).
    #[arg(long, env = "PRIVACY_RESPONSE_DEADLINE", value_parser = super::parse_delay, default_value = "30d")]
    pub response_deadline: std::time::Duration,
    #[command(subcommand)]
    pub action: RequestsAction,
}

/// Operator actions on requests.
#[derive(Debug, Clone, Subcommand)]
pub enum RequestsAction {
    /// List requests, newest first (no personal data).
    List {
        /// Only this status (registered, in_progress, completed, failed, revoked).
        #[arg(long, conflicts_with = "overdue")]
        status: Option<String>,
        /// Only open requests (registered, in progress, failed) past their
        /// `due_by`, oldest first.
        #[arg(long)]
        overdue: bool,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Show one request; personal data only with --reveal, which is audited.
    Show {
        /// Request id.
        id: i64,
        /// Decrypt and show the identifier and the personal data of its messages.
        #[arg(long)]
        reveal: bool,
        /// Why the personal data is revealed (recorded in the audit trail).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Revoke a registered request.
    Revoke {
        /// Request id.
        id: i64,
        /// Why (recorded in the audit trail).
        #[arg(long)]
        reason: String,
    },
    /// Put a failed request back (it is fulfilled again, with fresh attempts).
    Retry {
        /// Request id.
        id: i64,
        /// Why (recorded in the audit trail).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// The audit trail of one request.
    Audit {
        /// Request id.
        id: i64,
        /// JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
}

/// Options of `dlq`.
#[derive(Debug, Clone, Args)]
pub struct DlqArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// The work queue replayed messages go back to.
    #[arg(long, env = "PRIVACY_QUEUE", default_value = "lcm.privacy.requests")]
    pub queue: String,
    /// The dead queue.
    #[arg(long, env = "PRIVACY_DEAD_QUEUE", default_value = "lcm.privacy.dead")]
    pub dead_queue: String,
    #[command(subcommand)]
    pub action: DlqAction,
}

/// What to do with the dead queue.
#[derive(Debug, Clone, Subcommand)]
pub enum DlqAction {
    /// Show parked messages (ids, reason, attempts, last error; never bodies), leaving them parked.
    List {
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON array instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Move parked messages back to the work queue, oldest first.
    Replay {
        /// Move at most this many.
        #[arg(long, default_value_t = usize::MAX)]
        limit: usize,
    },
}
