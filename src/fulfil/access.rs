//! The access export: one CSV per table of the data map, named
//! `<database>.<table>.csv`, with a header row of the table's columns and one
//! row per row of the customer, and `manifest.json` beside them; stored as
//! `privacy-export-<request id>-<tag>.zip`, the tag a keyed HMAC of the id
//! (`Keys::archive_tag`), so no one who can list or guess names can fetch an
//! archive, while a retry, a takeover and a forget compute the same name.

use std::collections::BTreeMap;

use chrono::{SecondsFormat, Utc};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde_json::json;

use super::FulfilError;
use super::archive::{Archive, CHUNK};
use super::exports::{Exports, Link};
use super::resolve::Customer;
use crate::crypto::Keys;
use crate::datamap::DataMap;
use crate::targets::{Cells, CsvPiece, Read, TableColumns, TargetError, Targets};

/// What an access export produced: the result recorded with the request.
#[derive(Debug, Clone)]
pub struct AccessResult {
    /// Where the archive is.
    pub link: Link,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its SHA-256.
    pub sha256: String,
    /// Rows per file.
    pub rows: BTreeMap<String, u64>,
}

impl AccessResult {
    /// Rows exported in all.
    pub fn total_rows(&self) -> u64 {
        self.rows.values().sum()
    }

    /// As recorded and shown by a status query (no personal data).
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "download": {
                "url": self.link.url,
                "expiresAt": self.link.expires_at.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
                "bytes": self.bytes,
                "sha256": self.sha256,
            },
            "rows": self.rows,
        })
    }
}

/// The name request `request_id`'s archive is stored under:
/// `privacy-export-<id>-<32 hex digits>.zip`.
pub fn archive_name(keys: &Keys, request_id: i64) -> String {
    format!(
        "privacy-export-{request_id}-{}.zip",
        keys.archive_tag(request_id)
    )
}

/// The name archives were stored under before names were keyed: a forget
/// deletes this one too.
pub fn guessable_archive_name(request_id: i64) -> String {
    format!("privacy-export-{request_id}.zip")
}

/// Which attempt of which request an export is for.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    /// The request.
    pub request_id: i64,
    /// Its attempt (the lease's fencing token): names the spool file.
    pub attempt: i64,
    /// Its tenant, for the manifest.
    pub tenant: &'a str,
    /// The name its archive is stored under ([`archive_name`]).
    pub archive: &'a str,
}

/// Exports the customer's rows of every table.
pub async fn export(
    map: &DataMap,
    targets: &Targets,
    columns: &[TableColumns],
    customer: &Customer,
    job: Job<'_>,
    exports: &Exports,
) -> Result<AccessResult, FulfilError> {
    let Job {
        request_id,
        attempt,
        tenant,
        archive: name,
    } = job;
    let archive =
        Archive::create(&exports.spool, request_id, attempt).map_err(FulfilError::Archive)?;
    let mut rows = BTreeMap::new();
    for (table, found) in map.tables.iter().zip(columns) {
        // A database the request's tenant does not reach is not its data.
        let Some(selection) = customer.selections.get(&table.table) else {
            continue;
        };
        let name = format!("{}.csv", table.table);
        archive
            .file(name.clone(), found.columns.clone())
            .await
            .map_err(FulfilError::Archive)?;
        let names: Vec<&str> = found.columns.iter().map(String::as_str).collect();
        let count = match targets.csv_rows(table, selection, &names) {
            Some(records) => copy_records(&archive, records).await?,
            None => {
                send_rows(
                    &archive,
                    targets.rows(table, selection, &names, Read::InKeyOrder),
                )
                .await?
            }
        };
        rows.insert(name, count);
    }
    let manifest = json!({
        "requestId": request_id.to_string(),
        "tenant": tenant,
        "generatedAt": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        "files": rows.iter().map(|(name, n)| json!({"name": name, "rows": n})).collect::<Vec<_>>(),
    });
    let manifest = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
    archive
        .whole("manifest.json".to_owned(), manifest)
        .await
        .map_err(FulfilError::Archive)?;
    let spooled = archive.finish().await.map_err(FulfilError::Archive)?;
    let link = exports
        .put(name, &spooled)
        .await
        .map_err(FulfilError::Storage)?;
    Ok(AccessResult {
        link,
        bytes: spooled.bytes,
        sha256: spooled.sha256.clone(),
        rows,
    })
}

/// Hands the archive records PostgreSQL wrote as CSV; returns how many.
async fn copy_records(
    archive: &Archive,
    mut records: BoxStream<'_, Result<CsvPiece, TargetError>>,
) -> Result<u64, FulfilError> {
    let mut count = 0;
    while let Some(piece) = records.next().await {
        let piece = piece?;
        count += piece.records;
        archive
            .csv(piece.bytes)
            .await
            .map_err(FulfilError::Archive)?;
    }
    Ok(count)
}

/// Hands the archive rows as cells, in chunks; returns how many.
async fn send_rows(
    archive: &Archive,
    mut stream: BoxStream<'_, Result<Cells, TargetError>>,
) -> Result<u64, FulfilError> {
    let mut count = 0;
    let mut chunk = Vec::with_capacity(CHUNK);
    while let Some(row) = stream.next().await {
        chunk.push(row?);
        count += 1;
        if chunk.len() == CHUNK {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK));
            archive.rows(full).await.map_err(FulfilError::Archive)?;
        }
    }
    if !chunk.is_empty() {
        archive.rows(chunk).await.map_err(FulfilError::Archive)?;
    }
    Ok(count)
}
