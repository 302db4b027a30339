//! Where access archives are kept (`PRIVACY_EXPORT_URL`): a local directory
//! (`file:///some/dir`) through object_store's local backend, which writes under
//! a temporary name and renames, so a retry or a takeover replaces the archive
//! under the same name and never leaves a second or a half one. The link is a
//! `file://` URL. (S3 is the next step; its URL is refused at start until then.)

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use tokio::io::AsyncReadExt;

use super::archive::Spooled;

/// The store for archives.
#[derive(Debug, Clone)]
pub struct Exports {
    store: Arc<dyn ObjectStore>,
    dir: PathBuf,
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
    /// The store `url` names: `file:///abs/dir` or `file://./rel/dir`.
    pub fn open(url: &str) -> Result<Self, String> {
        let Some(dir) = url.strip_prefix("file://") else {
            let scheme = url.split("://").next().unwrap_or(url);
            return Err(format!(
                "PRIVACY_EXPORT_URL: {scheme}:// is not supported yet (file:///some/dir)"
            ));
        };
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("PRIVACY_EXPORT_URL: cannot create {}: {e}", dir.display()))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| format!("PRIVACY_EXPORT_URL: {}: {e}", dir.display()))?;
        let store = LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| format!("PRIVACY_EXPORT_URL: {e}"))?;
        Ok(Self {
            store: Arc::new(store),
            spool: dir.join(".spool"),
            dir,
        })
    }

    /// Stores a spooled archive as `name`, replacing any archive of that name.
    pub async fn put(&self, name: &str, archive: &Spooled) -> Result<Link, object_store::Error> {
        let location = StorePath::from(name);
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
        Ok(Link {
            url: format!("file://{}", self.dir.join(name).display()),
            expires_at: None,
        })
    }
}

fn io_error(name: &str, source: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "spool",
        source: format!("reading the spooled archive for {name}: {source}").into(),
    }
}
