//! How fulfilment is counted: each attempt by kind and outcome with its
//! duration, and the rows it touched. Kept apart from the runner so the
//! runner's code reads as the lifecycle it is.

use std::time::Duration;

use super::Ran;
use super::access::AccessResult;
use crate::metrics::{self, FulfilKind, RowAction, RunOutcome};
use crate::store::{Claimed, StoreError};

/// An attempt on `claimed` ended as `ran` after `took`. An attempt whose end
/// could not be written (the store failed) is not counted: its lease runs
/// out and the request is attempted again, and counted then.
pub(super) fn run_ended(claimed: &Claimed, ran: &Result<Ran, StoreError>, took: Duration) {
    let outcome = match ran {
        Ok(Ran::Completed(_)) => RunOutcome::Completed,
        Ok(Ran::Retrying(_)) => RunOutcome::Retried,
        Ok(Ran::Failed(_)) => RunOutcome::Failed,
        Ok(Ran::LostLease(_)) => RunOutcome::LostLease,
        Ok(Ran::Idle) | Err(_) => return,
    };
    let kind = FulfilKind::of(claimed.kind, claimed.pseudonymize);
    metrics::fulfilment_run(kind, outcome, took);
}

/// An access archive was written.
pub(super) fn exported(result: &AccessResult) {
    metrics::rows(RowAction::Exported, result.rows.values().sum());
}

/// Rows of a customer database were changed (their transaction committed).
pub(super) fn rewritten(action: crate::request::RowAction, count: u64) {
    let action = match action {
        crate::request::RowAction::Pseudonymize => RowAction::Pseudonymized,
        crate::request::RowAction::Delete | crate::request::RowAction::Anonymize => {
            RowAction::Erased
        }
    };
    metrics::rows(action, count);
}
