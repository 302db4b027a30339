//! `privacy-worker requests list | show | revoke | audit`: what an operator needs
//! to answer "what happened to this request?" without a SQL prompt.
//!
//! Nothing here prints personal data unless `show --reveal` asks for it, and that
//! request is itself written to the request's audit trail, with who and why.

use anyhow::{Context, bail};
use chrono::Utc;
use serde_json::{Value, json};

use crate::config::{RequestsAction, RequestsArgs};
use crate::crypto::{IDENTIFIER_CONTEXT, Keys, PERSONAL_CONTEXT};
use crate::deadline;
use crate::keyring::{self, Creation};
use crate::request::RequestStatus;
use crate::store::{RequestSummary, Store, StoreSettings, Transition};

/// Runs one operator action and returns what to print.
pub async fn run(args: &RequestsArgs) -> anyhow::Result<String> {
    let store = Store::connect(&StoreSettings::for_command(&args.store.database_url))
        .await
        .context("opening the store")?;
    let actor = format!("operator:{}", args.operator);
    let output = match &args.action {
        RequestsAction::List {
            status,
            tenant,
            overdue,
            limit,
            json,
        } => {
            let rows = if *overdue {
                let (before, _) = deadline::cutoffs(Utc::now(), args.response_deadline);
                let open = deadline::open_statuses();
                store
                    .list_registered_before(&open, before, tenant.as_deref(), *limit)
                    .await?
            } else {
                let status = status_named(status.as_deref())?;
                store
                    .list_requests(status, tenant.as_deref(), *limit)
                    .await?
            };
            if *json {
                let rows: Vec<Value> = rows.iter().map(|r| with_due_by(r, args)).collect();
                serde_json::to_string_pretty(&rows)?
            } else {
                rows.iter()
                    .map(|r| {
                        format!(
                            "{} tenant={} flow={} kind={} status={} identifier={} messages={} created={} updated={} due_by={}",
                            r.id, r.tenant, r.flow, r.kind, r.status, r.identifier_type,
                            r.messages, r.created_at.to_rfc3339(), r.updated_at.to_rfc3339(),
                            deadline::due_by(r.created_at, args.response_deadline).to_rfc3339()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
        RequestsAction::Show { id, reveal, reason } => {
            let summary = store
                .request_summary(*id)
                .await?
                .with_context(|| format!("no request {id}"))?;
            let mut shown = json!({ "request": with_due_by(&summary, args) });
            if *reveal {
                let keys = load_keys(args, &store).await?;
                let detail = store
                    .sealed_detail(*id)
                    .await?
                    .with_context(|| format!("no request {id}"))?;
                // A forgotten customer's identifier is destroyed: nothing to open.
                let identifier = if detail.identifier.key_id == crate::crypto::SHREDDED_KEY_ID {
                    b"(erased: the customer was forgotten)".to_vec()
                } else {
                    keys.open(IDENTIFIER_CONTEXT, &detail.identifier)?
                };
                let mut messages = Vec::new();
                for (operation, details, personal) in &detail.messages {
                    let personal: Value = match personal {
                        Some(sealed) => {
                            serde_json::from_slice(&keys.open(PERSONAL_CONTEXT, sealed)?)?
                        }
                        None => Value::Null,
                    };
                    let details: Value = serde_json::from_str(details)?;
                    messages.push(json!({"operation": operation, "details": details, "personal_data": personal}));
                }
                shown["identifier_value"] = json!(String::from_utf8_lossy(&identifier));
                shown["messages"] = json!(messages);
                let why = if reason.is_empty() {
                    "no reason given"
                } else {
                    reason
                };
                store
                    .note(*id, &actor, &format!("personal data revealed: {why}"))
                    .await?;
            }
            serde_json::to_string_pretty(&shown)?
        }
        RequestsAction::Revoke { id, reason } => {
            match store
                .transition(*id, RequestStatus::Revoked, &actor, reason)
                .await?
            {
                Transition::NotFound => bail!("no request {id}"),
                Transition::NotAllowed(status) => bail!(
                    "request {id} has status [{status}]; only requests in status [registered] can be revoked"
                ),
                Transition::Moved(_) => format!("request {id} revoked"),
            }
        }
        RequestsAction::Retry { id, reason } => {
            let why = if reason.is_empty() {
                "operator retry"
            } else {
                reason
            };
            match store.retry_failed(*id, &actor, why).await? {
                Transition::NotFound => bail!("no request {id}"),
                Transition::NotAllowed(status) => bail!(
                    "request {id} has status [{status}]; only requests in status [failed] can be retried"
                ),
                Transition::Moved(_) => {
                    format!("request {id} put back; it will be fulfilled again")
                }
            }
        }
        RequestsAction::Audit { id, json } => {
            store
                .request_summary(*id)
                .await?
                .with_context(|| format!("no request {id}"))?;
            let events = store.request_events(*id).await?;
            if *json {
                serde_json::to_string_pretty(&events)?
            } else {
                events
                    .iter()
                    .map(|e| {
                        format!(
                            "{} {} {} -> {}: {}",
                            e.at.to_rfc3339(),
                            e.actor,
                            e.from_status.map_or("-", RequestStatus::as_str),
                            e.to_status,
                            e.reason
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
    };
    store.close().await;
    Ok(output)
}

/// A request's summary with its `due_by` (registration + the response deadline).
fn with_due_by(summary: &RequestSummary, args: &RequestsArgs) -> Value {
    let mut shown = json!(summary);
    let due_by = deadline::due_by(summary.created_at, args.response_deadline);
    shown["due_by"] = json!(due_by);
    shown
}

/// The status `--status` names.
fn status_named(name: Option<&str>) -> anyhow::Result<Option<RequestStatus>> {
    let parse = |name: &str| {
        RequestStatus::parse(name).with_context(|| {
            let known: Vec<&str> = RequestStatus::ALL.iter().map(|s| s.as_str()).collect();
            format!("unknown status {name:?}; one of {}", known.join(", "))
        })
    };
    name.map(parse).transpose()
}

async fn load_keys(args: &RequestsArgs, store: &Store) -> anyhow::Result<Keys> {
    let keys = keyring::open(args.store.key_file.as_deref(), store, Creation::Never).await?;
    Ok(keys)
}
