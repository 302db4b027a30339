//! Where access archives are kept (`PRIVACY_EXPORT_URL`), through object_store:
//! a local directory (`file:///some/dir`), whose backend writes under a
//! temporary name and renames, or an S3-compatible bucket (`s3://bucket/prefix`,
//! configured by the usual `AWS_*` variables; `AWS_ENDPOINT_URL` for MinIO or a
//! test server, plain http allowed), written as a multipart upload completed at
//! the end. Either way a retry or a takeover replaces the archive under the same
//! name, never leaves a second or a half one. The link is a `file://` URL, or a
//! presigned GET valid `PRIVACY_EXPORT_LINK_TTL`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::signer::{Method, Signer};
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use tokio::io::AsyncReadExt;

use super::archive::Spooled;

/// Which kind of store, and how its links are made.
#[derive(Debug, Clone)]
enum Links {
    /// `file://<dir>/<name>`.
    Directory(PathBuf),
    /// A presigned GET of `<prefix>/<name>`, valid for the TTL.
    S3 {
        signer: Arc<AmazonS3>,
        prefix: String,
        ttl: Duration,
    },
}

/// The store for archives.
#[derive(Debug, Clone)]
pub struct Exports {
    store: Arc<dyn ObjectStore>,
    links: Links,
    /// Where archives are spooled before they are stored.
    pub spool: PathBuf,
}

/// Where an archive can be fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The URL.
    pub url: String,
    /// Until when it works (`None`: as long as the file is there).
    pub expires_at: Option<DateTime<Utc>>,
}

impl Exports {
    /// The store `url` names: `file:///abs/dir`, `file://./rel/dir` or
    /// `s3://bucket/prefix`; S3 links are valid `link_ttl`.
    pub fn open(url: &str, link_ttl: Duration) -> Result<Self, String> {
        if let Some(dir) = url.strip_prefix("file://") {
            let dir = PathBuf::from(dir);
            std::fs::create_dir_all(&dir)
                .map_err(|e| format!("PRIVACY_EXPORT_URL: cannot create {}: {e}", dir.display()))?;
            let dir = dir
                .canonicalize()
                .map_err(|e| format!("PRIVACY_EXPORT_URL: {}: {e}", dir.display()))?;
            let store = LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| format!("PRIVACY_EXPORT_URL: {e}"))?;
            return Ok(Self {
                store: Arc::new(store),
                spool: dir.join(".spool"),
                links: Links::Directory(dir),
            });
        }
        let Some(rest) = url.strip_prefix("s3://") else {
            return Err("PRIVACY_EXPORT_URL must be file:///some/dir or s3://bucket/prefix".into());
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err("PRIVACY_EXPORT_URL: s3:// names no bucket".into());
        }
        let plain_http = std::env::var("AWS_ENDPOINT_URL").is_ok_and(|e| e.starts_with("http://"));
        let s3 = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_allow_http(plain_http)
            .build()
            .map_err(|e| format!("PRIVACY_EXPORT_URL: {e}"))?;
        let s3 = Arc::new(s3);
        Ok(Self {
            store: s3.clone(),
            spool: std::env::temp_dir().join("privacy-worker-spool"),
            links: Links::S3 {
                signer: s3,
                prefix: prefix.trim_matches('/').to_owned(),
                ttl: link_ttl,
            },
        })
    }

    /// The object an archive of this name is stored as.
    fn location(&self, name: &str) -> StorePath {
        match &self.links {
            Links::S3 { prefix, .. } if !prefix.is_empty() => {
                StorePath::from(format!("{prefix}/{name}"))
            }
            _ => StorePath::from(name),
        }
    }

    /// Stores a spooled archive as `name`, replacing any archive of that name,
    /// and returns its link.
    pub async fn put(&self, name: &str, archive: &Spooled) -> Result<Link, object_store::Error> {
        let location = self.location(name);
        let upload = self.store.put_multipart(&location).await?;
        let mut writer = WriteMultipart::new(upload);
        let mut file = tokio::fs::File::open(&archive.path)
            .await
            .map_err(|e| io_error(name, e))?;
        let mut buffer = vec![0u8; 1024 * 1024];
        loop {
            let n = file
                .read(&mut buffer)
                .await
                .map_err(|e| io_error(name, e))?;
            if n == 0 {
                break;
            }
            writer.write(&buffer[..n]);
        }
        writer.finish().await?;
        Ok(match &self.links {
            Links::Directory(dir) => Link {
                url: format!("file://{}", dir.join(name).display()),
                expires_at: None,
            },
            Links::S3 { signer, ttl, .. } => {
                let url = signer.signed_url(Method::GET, &location, *ttl).await?;
                let expires = chrono::TimeDelta::from_std(*ttl).unwrap_or(chrono::TimeDelta::MAX);
                Link {
                    url: url.to_string(),
                    expires_at: Some(Utc::now() + expires),
                }
            }
        })
    }
}

impl Exports {
    /// Deletes the archive `name`, if there is one.
    pub async fn delete(&self, name: &str) -> Result<(), object_store::Error> {
        match self.store.delete(&self.location(name)).await {
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            other => other,
        }
    }
}

fn io_error(name: &str, source: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "spool",
        source: format!("reading the spooled archive for {name}: {source}").into(),
    }
}
