//! The export archive: a ZIP of CSV files written on a thread of its own from
//! rows sent to it through a bounded channel, spooled to a file (never held in
//! memory), then hashed. RFC 4180 CSV by the `csv` crate (CRLF line breaks,
//! quoted where needed), UTF-8, a header row.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use zip::CompressionMethod;
use zip::write::{SimpleFileOptions, ZipWriter};

use crate::targets::Cells;

/// What goes into the archive, in order.
enum Piece {
    /// A new CSV file with its header row.
    File { name: String, header: Vec<String> },
    /// Rows of the current file (sent in chunks: one wake-up of the writer
    /// thread per chunk, not per row).
    Rows(Vec<Cells>),
    /// Records of the current file, already CSV (PostgreSQL's `COPY`).
    Csv(Vec<u8>),
    /// A file written whole (the manifest).
    Whole { name: String, bytes: Vec<u8> },
}

/// The spooled archive, once finished.
#[derive(Debug)]
pub struct Spooled {
    /// Where it is (removed when this is dropped).
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Its SHA-256, hex.
    pub sha256: String,
}

impl Drop for Spooled {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// An archive being written.
pub struct Archive {
    pieces: mpsc::Sender<Piece>,
    writer: tokio::task::JoinHandle<std::io::Result<Spooled>>,
}

/// Chunks in flight between the database and the archive, at most.
const IN_FLIGHT: usize = 8;

/// Rows per chunk.
pub const CHUNK: usize = 512;

impl Archive {
    /// Starts the archive of attempt `attempt` of request `request_id`,
    /// spooled to a file of its own in `dir`. The spool files of the request's
    /// earlier attempts are removed first: their owners were killed or lost
    /// the lease (which fences whatever they would still write), and nothing
    /// else would ever remove them.
    pub fn create(dir: &Path, request_id: i64, attempt: i64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let prefix = format!(".spool-{request_id}-");
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            let earlier = name
                .to_str()
                .and_then(|n| {
                    n.strip_prefix(&prefix)?
                        .strip_suffix(".zip")?
                        .parse::<i64>()
                        .ok()
                })
                .is_some_and(|a| a < attempt);
            if earlier {
                let _ = std::fs::remove_file(dir.join(name));
            }
        }
        let path = dir.join(format!("{prefix}{attempt}.zip"));
        let file = File::create(&path)?;
        let (pieces, received) = mpsc::channel(IN_FLIGHT);
        let writer = tokio::task::spawn_blocking(move || write(file, path, received));
        Ok(Self { pieces, writer })
    }

    async fn send(&self, piece: Piece) -> std::io::Result<()> {
        self.pieces
            .send(piece)
            .await
            .map_err(|_| std::io::Error::other("the archive writer stopped"))
    }

    /// Starts the CSV file `name` with its header row.
    pub async fn file(&self, name: String, header: Vec<String>) -> std::io::Result<()> {
        self.send(Piece::File { name, header }).await
    }

    /// Adds rows to the current CSV file.
    pub async fn rows(&self, rows: Vec<Cells>) -> std::io::Result<()> {
        self.send(Piece::Rows(rows)).await
    }

    /// Adds records, already CSV with CRLF line breaks, to the current file.
    pub async fn csv(&self, records: Vec<u8>) -> std::io::Result<()> {
        self.send(Piece::Csv(records)).await
    }

    /// Adds a whole file.
    pub async fn whole(&self, name: String, bytes: Vec<u8>) -> std::io::Result<()> {
        self.send(Piece::Whole { name, bytes }).await
    }

    /// Closes the archive and hashes it.
    pub async fn finish(self) -> std::io::Result<Spooled> {
        drop(self.pieces);
        self.writer.await.map_err(std::io::Error::other)?
    }
}

/// ZIP entries carry a date and time without a zone: the export's, in UTC.
fn zip_time(now: chrono::DateTime<chrono::Utc>) -> zip::DateTime {
    use chrono::{Datelike, Timelike};
    let part = |n: u32| u8::try_from(n).unwrap_or(0);
    u16::try_from(now.year())
        .ok()
        .and_then(|year| {
            zip::DateTime::from_date_and_time(
                year,
                part(now.month()),
                part(now.day()),
                part(now.hour()),
                part(now.minute()),
                part(now.second()),
            )
            .ok()
        })
        .unwrap_or_default()
}

fn zip_error(e: zip::result::ZipError) -> std::io::Error {
    std::io::Error::other(e)
}

/// Writes records through the `csv` crate (RFC 4180, CRLF).
fn write_records<W: Write, R: IntoIterator<Item = impl AsRef<[u8]>>>(
    out: &mut W,
    csv: &csv::WriterBuilder,
    records: impl IntoIterator<Item = R>,
) -> std::io::Result<()> {
    let mut writer = csv.from_writer(out);
    for record in records {
        writer.write_record(record).map_err(std::io::Error::other)?;
    }
    writer.flush()
}

/// The writer thread: pieces in, a finished, hashed archive out.
fn write(file: File, path: PathBuf, mut pieces: mpsc::Receiver<Piece>) -> std::io::Result<Spooled> {
    let spooled = Spooled {
        path,
        bytes: 0,
        sha256: String::new(),
    };
    let mut zip = ZipWriter::new(BufWriter::new(file));
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .last_modified_time(zip_time(chrono::Utc::now()))
        .large_file(true);
    let mut csv = csv::WriterBuilder::new();
    csv.terminator(csv::Terminator::CRLF);
    while let Some(piece) = pieces.blocking_recv() {
        match piece {
            Piece::File { name, header } => {
                zip.start_file(name, options).map_err(zip_error)?;
                write_records(&mut zip, &csv, std::iter::once(header))?;
            }
            Piece::Rows(rows) => write_records(
                &mut zip,
                &csv,
                rows.into_iter()
                    .map(|cells| cells.into_iter().map(Option::unwrap_or_default)),
            )?,
            Piece::Csv(records) => zip.write_all(&records)?,
            Piece::Whole { name, bytes } => {
                zip.start_file(name, options).map_err(zip_error)?;
                zip.write_all(&bytes)?;
            }
        }
    }
    let mut file = zip.finish().map_err(zip_error)?;
    file.flush()?;
    drop(file);
    let mut hasher = Sha256::new();
    let mut reader = File::open(&spooled.path)?;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        bytes += n as u64;
    }
    let mut spooled = spooled;
    spooled.bytes = bytes;
    spooled.sha256 = hex::encode(hasher.finalize());
    Ok(spooled)
}
