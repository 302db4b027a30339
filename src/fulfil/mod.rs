//! Fulfilment: the job runner subsystem, which claims due requests under a
//! lease and fulfils them against the customer databases of the data map.
//!
//! Access requests are exported (`access`), forget requests erased and LCM
//! requests with `IsPseudonymize` exported then pseudonymized (`erasure`).

mod access;
mod archive;
mod erasure;
mod exports;
mod observe;
mod resolve;
mod runner;
mod verify;

use thiserror::Error;

pub use access::archive_name;
pub use erasure::table_changes;
pub use exports::Exports;
pub use resolve::{Asked, Customer, Lookups, ResolveError, resolve};
pub use runner::{FulfilSettings, Ran, Runner};

use crate::request::FailureCode;
use crate::store::StoreError;
use crate::targets::TargetError;

/// Why an attempt at fulfilment failed. Its text names what failed (a
/// database, the archive, the storage), never personal data.
#[derive(Debug, Error)]
pub enum FulfilError {
    /// A customer database.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// Writing the archive.
    #[error("writing the archive: {}", .0.kind())]
    Archive(#[source] std::io::Error),
    /// Storing the archive.
    #[error("storing the archive failed")]
    Storage(#[source] object_store::Error),
    /// The request's own data could not be read (keys).
    #[error("the request cannot be read: {0}")]
    Request(String),
    /// The worker's store failed between two steps: an outage is retried.
    #[error("the worker's store failed")]
    Store(#[from] StoreError),
    /// The lease was lost: another instance has the request now.
    #[error("the lease was lost")]
    LostLease,
    /// The request cannot be fulfilled as it stands (its identifier is
    /// ambiguous, rows remained after an erasure): an operator looks.
    #[error("{code}: {what}")]
    Refused {
        /// For a machine.
        code: FailureCode,
        /// What, naming tables and counts, never values.
        what: String,
    },
}

impl From<ResolveError> for FulfilError {
    fn from(error: ResolveError) -> Self {
        match error {
            ResolveError::Target(e) => Self::Target(e),
            ambiguous @ ResolveError::Ambiguous { .. } => Self::Refused {
                code: FailureCode::AmbiguousIdentifier,
                what: format!("{ambiguous}; nothing was changed"),
            },
        }
    }
}

impl FulfilError {
    /// True when another attempt may succeed (a database or the storage down).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Target(e) => e.is_transient(),
            Self::Store(e) => e.is_transient(),
            Self::Archive(_) | Self::Storage(_) | Self::LostLease => true,
            Self::Request(_) | Self::Refused { .. } => false,
        }
    }

    /// The reason recorded with the request: what failed, no values. A
    /// database's own message may quote a value, so only its name is kept.
    pub fn reason(&self) -> String {
        match self {
            Self::Target(TargetError::Unavailable { database, .. }) => {
                format!("customer database {database} unavailable")
            }
            Self::Target(TargetError::Rejected { database, .. }) => {
                format!("customer database {database} refused a statement")
            }
            Self::Target(other) => other.to_string(),
            Self::Store(e) if e.is_transient() => "the worker's store is unavailable".into(),
            Self::Store(_) => "the worker's store refused a statement".into(),
            other => other.to_string(),
        }
    }
}
