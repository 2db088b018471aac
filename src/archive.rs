//! The CSV archive: one file per check, target and run with rows, and its lifecycle.
//!
//! Layout: `{root}/{target}/{check}/{check}_{YYYYMMDDTHHMMSS.mmmZ}.csv` (UTC start of the run),
//! or `.csv.gz` when gzip is on (compressed while it is written), a header of the query's
//! column names, NULL as an empty field. Each file is written to a hidden temporary name in
//! the same folder, flushed, fsynced and only then renamed, so a crash never leaves a
//! partial file under a final name; [`clean_temporaries`] removes what a crash left behind.
//! A finished file is counted in [`stats`] and, when S3 is configured, queued for
//! [`upload`].
//!
//! Writes run on their own tasks, bounded by a semaphore, never on the scheduling path; so
//! do [`retention`] and [`upload`]. A run's rows can be streamed in ([`Archiver::write_stream`])
//! as the query returns them, so a result is never held whole; a stream that ends without
//! [`Feed::End`] (the query failed or timed out) leaves no file: the temporary is removed,
//! never renamed. [`inspect`] serves the `archive list` / `archive cat`
//! commands and [`layout`] owns the naming rules. Only this module (and its children) knows
//! CSV. It knows nothing about metrics or the database.

pub mod inspect;
pub mod layout;
pub mod lifecycle;
pub mod retention;
#[cfg(feature = "s3")]
pub mod s3;
pub mod stats;
pub mod upload;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use async_compression::tokio::write::GzipEncoder;
use chrono::{DateTime, Utc};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{RwLock, Semaphore, mpsc};

use crate::config::{Compression, Config};
use crate::rows::Rows;
use crate::sample::ResultSet;
use stats::ArchiveStats;
use upload::UploadQueue;

/// How many CSV files may be written at the same time.
const CONCURRENT_WRITES: usize = 4;

/// A failed archive write.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct ArchiveError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// What a streaming write receives, in order: rows, then `End` once the query succeeded.
#[derive(Debug)]
pub enum Feed {
    /// The next rows, in a batch.
    Rows(Rows),
    /// The result is complete: finish the file and rename it into place.
    End,
}

/// Where the rows of one file come from.
enum Source<'a> {
    Whole(&'a ResultSet),
    Stream(&'a [String], &'a mut mpsc::Receiver<Feed>),
}

/// Writes CSV files under one root folder.
#[derive(Clone)]
pub struct Archiver {
    root: PathBuf,
    /// Bounds concurrent writes (file descriptors, disk bandwidth).
    permits: Arc<Semaphore>,
    /// Plain or gzip.
    compression: Compression,
    /// Files, bytes, deletions and uploads per folder, for `/metrics`.
    pub stats: Arc<ArchiveStats>,
    /// Where finished files go when S3 upload is on.
    uploads: Option<UploadQueue>,
    /// Writes hold the read side from rename to gauge update; a retention walk holds the
    /// write side, so a new file is counted once, by one of them.
    walk_lock: Arc<RwLock<()>>,
    /// Set while writes fail, so a failure episode is logged once, not once per file.
    failing: Arc<AtomicBool>,
}

/// Where a write leaves the current failure episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Episode {
    /// The first failure after successes.
    Started,
    /// Another failure.
    Ongoing,
    /// The first success after failures.
    Recovered,
    /// Another success.
    Fine,
}

impl Archiver {
    pub fn new(root: PathBuf) -> Self {
        Archiver {
            root,
            permits: Arc::new(Semaphore::new(CONCURRENT_WRITES)),
            compression: Compression::None,
            stats: Arc::new(ArchiveStats::default()),
            uploads: None,
            walk_lock: Arc::new(RwLock::new(())),
            failing: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Records a write's outcome and says where it leaves the failure episode.
    pub fn episode(&self, ok: bool) -> Episode {
        match (self.failing.swap(!ok, Ordering::AcqRel), ok) {
            (false, false) => Episode::Started,
            (true, false) => Episode::Ongoing,
            (true, true) => Episode::Recovered,
            (false, true) => Episode::Fine,
        }
    }

    /// The archiver `config` asks for (without uploads); `None` when archiving is off.
    pub fn from_config(config: &Config) -> Option<Self> {
        let root = config.exporter.archive_dir.clone()?;
        Some(Archiver::new(root).with_compression(config.exporter.archive.compression))
    }

    pub fn with_compression(mut self, c: Compression) -> Self {
        self.compression = c;
        self
    }

    /// Queues every finished file for upload.
    pub fn with_uploads(mut self, q: UploadQueue) -> Self {
        self.uploads = Some(q);
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The final path of a run's file. Target and check names are validated identifiers
    /// (no separators, no dots), so the path cannot leave the root.
    pub fn path_for(&self, target: &str, check: &str, started: SystemTime) -> PathBuf {
        let ts: DateTime<Utc> = started.into();
        self.root
            .join(target)
            .join(check)
            .join(layout::file_name(check, ts, self.compression))
    }

    /// Writes one result; returns the final path.
    pub async fn write(
        &self,
        target: &str,
        check: &str,
        started: SystemTime,
        result: &ResultSet,
    ) -> Result<PathBuf, ArchiveError> {
        let path = self
            .write_from(target, check, started, Source::Whole(result))
            .await?;
        Ok(path.expect("a whole result is always complete"))
    }

    /// Writes a result whose rows arrive on `rows` while the query runs; `columns` is the
    /// header. Returns the final path, or `None` when the feed closed without [`Feed::End`]
    /// (the run failed): then the temporary file is removed and nothing is renamed.
    pub async fn write_stream(
        &self,
        target: &str,
        check: &str,
        started: SystemTime,
        columns: &[String],
        mut rows: mpsc::Receiver<Feed>,
    ) -> Result<Option<PathBuf>, ArchiveError> {
        self.write_from(target, check, started, Source::Stream(columns, &mut rows))
            .await
    }

    async fn write_from(
        &self,
        target: &str,
        check: &str,
        started: SystemTime,
        source: Source<'_>,
    ) -> Result<Option<PathBuf>, ArchiveError> {
        let _permit = self.permits.acquire().await.ok();
        let path = self.path_for(target, check, started);
        let dir = path
            .parent()
            .expect("archive path has a parent")
            .to_path_buf();
        let name = path
            .file_name()
            .expect("archive path has a name")
            .to_string_lossy()
            .into_owned();
        let tmp = dir.join(format!(".{name}.tmp"));
        let err = |action: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |source| ArchiveError {
                action,
                path: p,
                source,
            }
        };
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(err("cannot create folder", &dir))?;
        let written = write_csv(&tmp, source, self.compression).await;
        let size = match written {
            Ok(Some(n)) => n,
            Ok(None) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Ok(None);
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(e);
            }
        };
        {
            let _counted_once = self.walk_lock.read().await;
            tokio::fs::rename(&tmp, &path)
                .await
                .map_err(err("cannot rename into place", &path))?;
            self.stats.add_file(target, check, size);
        }
        // Make the rename itself durable.
        if let Ok(d) = tokio::fs::File::open(&dir).await {
            let _ = d.sync_all().await;
        }
        if let Some(q) = &self.uploads {
            q.push(target, check, &path);
        }
        Ok(Some(path))
    }
}

/// Writes the CSV to `tmp` (through gzip when asked), flushed and fsynced; returns its size,
/// or `None` when a streamed source was abandoned before its end (nothing is synced then;
/// the caller removes the file).
async fn write_csv(
    tmp: &Path,
    source: Source<'_>,
    compression: Compression,
) -> Result<Option<u64>, ArchiveError> {
    let err = |action: &'static str| {
        let p = tmp.to_path_buf();
        move |source| ArchiveError {
            action,
            path: p,
            source,
        }
    };
    let file = tokio::fs::File::create(tmp)
        .await
        .map_err(err("cannot create"))?;
    let buf = tokio::io::BufWriter::with_capacity(64 * 1024, file);
    let (mut buf, complete) = match compression {
        Compression::None => write_rows(buf, source).await.map_err(err("cannot write"))?,
        Compression::Gzip => {
            // The CSV writer feeds the encoder, which feeds the file: compressed as it goes.
            let (mut gz, complete) = write_rows(GzipEncoder::new(buf), source)
                .await
                .map_err(err("cannot write"))?;
            // shutdown() writes the gzip trailer (and flushes what is below it).
            gz.shutdown().await.map_err(err("cannot flush"))?;
            (gz.into_inner(), complete)
        }
    };
    if !complete {
        return Ok(None);
    }
    buf.flush().await.map_err(err("cannot flush"))?;
    let file = buf.into_inner();
    file.sync_all().await.map_err(err("cannot sync"))?;
    let size = file.metadata().await.map_err(err("cannot stat"))?.len();
    Ok(Some(size))
}

/// Header and rows into `w`; returns `w` with everything handed to it, and whether the
/// source was complete (a stream that closed without [`Feed::End`] was abandoned).
///
/// The CSV is written by hand into one buffer handed to `w` every [`CSV_BUFFER`] bytes: no
/// allocation per row or field. Its dialect is the `csv` crate's default (which the archive
/// always used, and `archive cat` reads): `,` between fields, `\n` after each record, a field
/// quoted only when it holds `,`, `"`, `\r` or `\n` (quotes doubled inside), and an empty field
/// quoted (`""`) when it is a record's only field; NULL is an empty field.
async fn write_rows<W: AsyncWrite + Unpin + Send>(
    mut w: W,
    source: Source<'_>,
) -> io::Result<(W, bool)> {
    let mut out: Vec<u8> = Vec::with_capacity(CSV_BUFFER + 64 * 1024);
    let columns = match &source {
        Source::Whole(result) => &result.columns[..],
        Source::Stream(columns, _) => columns,
    };
    csv_record(&mut out, columns.iter().map(|c| Some(c.as_str())));
    let complete = match source {
        Source::Whole(result) => {
            for row in &result.rows {
                csv_record(&mut out, row.iter().map(|v| v.as_deref()));
                if out.len() >= CSV_BUFFER {
                    w.write_all(&out).await?;
                    out.clear();
                }
            }
            true
        }
        Source::Stream(_, rows) => loop {
            match rows.recv().await {
                Some(Feed::Rows(batch)) => {
                    for row in batch.iter() {
                        csv_record(&mut out, row.fields());
                    }
                    drop(batch);
                    if out.len() >= CSV_BUFFER {
                        w.write_all(&out).await?;
                        out.clear();
                    }
                }
                Some(Feed::End) => break true,
                None => break false,
            }
        },
    };
    if !out.is_empty() {
        w.write_all(&out).await?;
    }
    Ok((w, complete))
}

/// CSV bytes handed to the file at a time.
const CSV_BUFFER: usize = 256 * 1024;

/// One CSV record (see [`write_rows`] for the dialect).
fn csv_record<'a>(out: &mut Vec<u8>, fields: impl Iterator<Item = Option<&'a str>>) {
    let start = out.len();
    let mut n = 0usize;
    for f in fields {
        if n > 0 {
            out.push(b',');
        }
        n += 1;
        let f = f.unwrap_or("").as_bytes();
        if f.iter().any(|&b| matches!(b, b',' | b'"' | b'\n' | b'\r')) {
            out.push(b'"');
            for part in f.split_inclusive(|&b| b == b'"') {
                out.extend_from_slice(part);
                if part.last() == Some(&b'"') {
                    out.push(b'"');
                }
            }
            out.push(b'"');
        } else {
            out.extend_from_slice(f);
        }
    }
    if n == 1 && out.len() == start {
        out.extend_from_slice(b"\"\"");
    }
    out.push(b'\n');
}

/// Removes temporary files a crash left in `{root}/{target}/{check}/`. Returns how many.
pub fn clean_temporaries(root: &Path) -> usize {
    let mut removed = 0;
    let Ok(targets) = std::fs::read_dir(root) else {
        return 0;
    };
    for t in targets.flatten() {
        let Ok(checks) = std::fs::read_dir(t.path()) else {
            continue;
        };
        for c in checks.flatten() {
            let Ok(files) = std::fs::read_dir(c.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.')
                    && (name.ends_with(".csv.tmp") || name.ends_with(".csv.gz.tmp"))
                    && std::fs::remove_file(f.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[tokio::test]
    async fn writes_header_rows_and_nulls_then_renames() {
        let dir = tempfile::tempdir().unwrap();
        let a = Archiver::new(dir.path().to_path_buf());
        let started = UNIX_EPOCH + Duration::from_millis(1_764_203_045_123);
        let rs = ResultSet {
            columns: vec!["name".into(), "value".into()],
            rows: vec![
                vec![Some("a,b".into()), Some("1".into())],
                vec![Some("say \"hi\"".into()), None],
            ],
        };
        let path = a.write("main", "c1", started, &rs).await.unwrap();
        assert_eq!(path, dir.path().join("main/c1/c1_20251127T002405.123Z.csv"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "name,value\n\"a,b\",1\n\"say \"\"hi\"\"\",\n");
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
    }

    #[tokio::test]
    async fn streamed_rows_are_written_and_an_abandoned_stream_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let a = Archiver::new(dir.path().to_path_buf());
        let columns = vec!["k".to_string(), "v".to_string()];
        let t1 = UNIX_EPOCH + Duration::from_millis(1_764_203_045_123);
        let (tx, rx) = mpsc::channel(4);
        let writer = {
            let (a, columns) = (a.clone(), columns.clone());
            tokio::spawn(async move { a.write_stream("main", "c1", t1, &columns, rx).await })
        };
        for i in 0..1000 {
            let v = (i % 2 == 0).then(|| i.to_string());
            let mut batch = Rows::new(2);
            batch.push_row([Some(format!("k{i}").as_str()), v.as_deref()]);
            tx.send(Feed::Rows(batch)).await.unwrap();
        }
        tx.send(Feed::End).await.unwrap();
        let path = writer.await.unwrap().unwrap().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("k,v\nk0,0\nk1,\n"), "{}", &text[..20]);
        assert_eq!(text.lines().count(), 1001);

        // Closed without End: the run failed; no file, no temporary.
        let t2 = t1 + Duration::from_secs(1);
        let (tx, rx) = mpsc::channel(4);
        let writer = {
            let (a, columns) = (a.clone(), columns.clone());
            tokio::spawn(async move { a.write_stream("main", "c1", t2, &columns, rx).await })
        };
        let mut batch = Rows::new(2);
        batch.push_row([Some("x"), None]);
        tx.send(Feed::Rows(batch)).await.unwrap();
        drop(tx);
        assert!(writer.await.unwrap().unwrap().is_none());
        let files: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files, vec![path.file_name().unwrap().to_owned()]);
    }

    /// The hand-written CSV is byte for byte what the `csv` crate writes.
    #[test]
    fn csv_matches_the_csv_crate() {
        let rows: Vec<Vec<Option<&str>>> = vec![
            vec![Some("plain"), Some("a,b"), Some("say \"hi\"")],
            vec![None, Some(""), Some("line\nbreak")],
            vec![Some("cr\r"), Some("\"\""), Some(" spaced ")],
            vec![Some("ünïcode"), Some("#hash"), Some("'quote'")],
        ];
        let mut ours = Vec::new();
        let mut theirs = csv::WriterBuilder::new()
            .flexible(true)
            .from_writer(Vec::new());
        for r in &rows {
            csv_record(&mut ours, r.iter().copied());
            theirs
                .write_record(r.iter().map(|v| v.unwrap_or("")))
                .unwrap();
        }
        for single in [None, Some(""), Some("x")] {
            csv_record(&mut ours, [single].into_iter());
            theirs.write_record([single.unwrap_or("")]).unwrap();
        }
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            String::from_utf8(theirs.into_inner().unwrap()).unwrap()
        );
    }

    #[test]
    fn failure_episodes() {
        let a = Archiver::new(PathBuf::from("x"));
        assert_eq!(a.episode(true), Episode::Fine);
        assert_eq!(a.episode(false), Episode::Started);
        assert_eq!(a.episode(false), Episode::Ongoing);
        assert_eq!(a.episode(true), Episode::Recovered);
        assert_eq!(a.episode(true), Episode::Fine);
    }

    #[tokio::test]
    async fn gzip_writes_a_csv_gz_that_decodes_to_the_same_csv_and_counts_it() {
        use std::io::Read;
        let dir = tempfile::tempdir().unwrap();
        let a = Archiver::new(dir.path().to_path_buf()).with_compression(Compression::Gzip);
        let started = UNIX_EPOCH + Duration::from_millis(1_764_203_045_123);
        // Enough rows to pass through the encoder's and the file buffer's capacity.
        let rows: Vec<Vec<Option<String>>> = (0..20_000)
            .map(|i| vec![Some(format!("row {i}")), Some(i.to_string())])
            .collect();
        let rs = ResultSet {
            columns: vec!["name".into(), "value".into()],
            rows,
        };
        let path = a.write("main", "c1", started, &rs).await.unwrap();
        assert_eq!(
            path,
            dir.path().join("main/c1/c1_20251127T002405.123Z.csv.gz")
        );
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(&raw[..2], &[0x1f, 0x8b], "gzip magic");
        let mut text = String::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_string(&mut text)
            .unwrap();
        assert!(text.starts_with("name,value\nrow 0,0\nrow 1,1\n"));
        assert!(text.ends_with("row 19999,19999\n"));
        assert_eq!(text.lines().count(), 20_001);
        assert!(raw.len() < text.len() / 3, "compressed");
        let s = a.stats.get("main", "c1");
        assert_eq!((s.files, s.bytes), (1, raw.len() as u64));
        // A gzip temporary left by a crash is cleaned like a plain one.
        std::fs::write(dir.path().join("main/c1/.c1_1.csv.gz.tmp"), b"x").unwrap();
        assert_eq!(clean_temporaries(dir.path()), 1);
    }

    #[tokio::test]
    async fn failure_leaves_no_file_and_temporaries_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main"), b"not a folder").unwrap();
        let a = Archiver::new(dir.path().to_path_buf());
        let rs = ResultSet {
            columns: vec!["x".into()],
            rows: vec![vec![None]],
        };
        let e = a
            .write("main", "c1", SystemTime::now(), &rs)
            .await
            .unwrap_err();
        assert_eq!(e.action, "cannot create folder");

        let folder = dir.path().join("t/c");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(".c_1.csv.tmp"), b"partial").unwrap();
        std::fs::write(folder.join("c_1.csv"), b"x\n").unwrap();
        assert_eq!(clean_temporaries(dir.path()), 1);
        assert!(folder.join("c_1.csv").exists());
    }
}
