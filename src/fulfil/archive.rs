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
    /// Starts an archive spooled to a new file in `dir`.
    pub fn create(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!(".spool-{}.zip", uuid::Uuid::new_v4().simple()));
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

fn zip_error(e: zip::result::ZipError) -> std::io::Error {
    std::io::Error::other(e)
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
        .large_file(true);
    let mut csv = csv::WriterBuilder::new();
    csv.terminator(csv::Terminator::CRLF);
    let mut next = pieces.blocking_recv();
    while let Some(piece) = next.take() {
        match piece {
            // A CSV file: its header, then its rows until the next piece.
            Piece::File { name, header } => {
                zip.start_file(name, options).map_err(zip_error)?;
                let mut file = csv.from_writer(&mut zip);
                file.write_record(&header).map_err(std::io::Error::other)?;
                loop {
                    match pieces.blocking_recv() {
                        Some(Piece::Rows(rows)) => {
                            for cells in &rows {
                                let cells = cells.iter().map(|c| c.as_deref().unwrap_or(""));
                                file.write_record(cells).map_err(std::io::Error::other)?;
                            }
                        }
                        other => {
                            next = other;
                            break;
                        }
                    }
                }
                file.flush()?;
            }
            Piece::Whole { name, bytes } => {
                zip.start_file(name, options).map_err(zip_error)?;
                zip.write_all(&bytes)?;
                next = pieces.blocking_recv();
            }
            Piece::Rows(_) => return Err(std::io::Error::other("rows before their file")),
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
