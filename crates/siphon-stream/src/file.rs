//! The `file://` event sink: one JSON Lines file per table under a directory,
//! each line one change, fsync'd before the engine moves a checkpoint.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use siphon_core::{Delivery, Error, Event, EventSink, Op, Result};

use crate::json::event_json;

/// Writes events as JSON Lines, one file per table: `<dir>/<table>.jsonl`,
/// where `<table>` is the table's name (`public.items`) with every byte other
/// than ASCII letters, digits, `.`, `_` and `-` written as `%XX`. Each line is
/// one event ([`crate::json`]), appended in the order the changes happened;
/// the directory is created when missing.
///
/// [`EventSink::publish`] returns once the lines are written and fsync'd (the
/// file, and the directory when the file is new): that is the durable
/// acknowledgement after which the engine saves the checkpoint.
///
/// Delivery is at least once: after a crash, the events since the table's
/// last checkpoint are appended again with the ids they had, so a line may
/// repeat an earlier line's id (and then carries the same change); a reader
/// keeps the first line of each id. A line a crash cut short (never
/// acknowledged) is cut off the file's end before anything is appended.
///
/// A table's shape is announced (`op: schema`) when a pipeline's pass
/// prepares it and whenever it changes; an announcement identical to the
/// last one this sink wrote for the table is not written again.
///
/// Concurrency: publishes are written one at a time, each call's lines
/// contiguous in each file.
#[derive(Debug, Clone)]
pub struct FileSink {
    dir: PathBuf,
    /// Files whose end was checked for a torn last line since this sink opened.
    checked: Arc<Mutex<HashSet<PathBuf>>>,
    /// The id of the last shape announcement written to each file.
    announced: Arc<Mutex<HashMap<PathBuf, String>>>,
}

impl FileSink {
    /// A sink writing under `dir`, created (with its parents) when missing.
    pub fn open(dir: impl Into<PathBuf>) -> Result<FileSink> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::config(format!(
                "cannot create the event directory {}: check the path and its permissions",
                dir.display()
            ))
            .source(e)
        })?;
        Ok(FileSink {
            dir,
            checked: Arc::new(Mutex::new(HashSet::new())),
            announced: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The directory a `file://` URL names: `file:///abs/dir` is absolute,
    /// `file://rel/dir` relative to the working directory; a query is ignored.
    pub fn path_from_url(url: &str) -> Result<PathBuf> {
        let rest = url
            .strip_prefix("file://")
            .ok_or_else(|| Error::config(format!("`{url}` is not a file:// URL")))?;
        let path = rest.split('?').next().unwrap_or_default();
        if path.is_empty() {
            return Err(Error::config(format!(
                "`{url}` names no directory: write file://relative/dir or file:///absolute/dir"
            )));
        }
        Ok(PathBuf::from(path))
    }

    /// The directory events are written under.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds the events of the table whose key
    /// ([`siphon_core::TableName::key`]) is `table`.
    pub fn file_of(&self, table: &str) -> PathBuf {
        let mut name = String::with_capacity(table.len() + 6);
        for b in table.bytes() {
            if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
                name.push(b as char);
            } else {
                name.push_str(&format!("%{b:02X}"));
            }
        }
        name.push_str(".jsonl");
        self.dir.join(name)
    }
}

impl EventSink for FileSink {
    fn delivery(&self) -> Delivery {
        Delivery::AtLeastOnce
    }

    async fn publish(&self, events: Vec<Event>) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        // Lines grouped by file, each group in the events' order.
        let mut groups: Vec<(PathBuf, Vec<u8>)> = Vec::new();
        let mut announced = Vec::new();
        for e in &events {
            let path = self.file_of(&e.change.table.name.key());
            if matches!(e.change.op, Op::Schema(_)) {
                let last = self.announced.lock().unwrap_or_else(|p| p.into_inner());
                if last.get(&path) == Some(&e.id) {
                    continue;
                }
                announced.push((path.clone(), e.id.clone()));
            }
            let mut line = serde_json::to_vec(&event_json(e))
                .map_err(|err| Error::internal("encoding an event").source(err))?;
            line.push(b'\n');
            match groups.iter_mut().find(|(p, _)| *p == path) {
                Some((_, buf)) => buf.extend_from_slice(&line),
                None => groups.push((path, line)),
            }
        }
        if groups.is_empty() {
            return Ok(());
        }
        let dir = self.dir.clone();
        let checked = self.checked.clone();
        let written = tokio::task::spawn_blocking(move || {
            // One publish at a time keeps each call's lines contiguous.
            let mut checked = checked.lock().unwrap_or_else(|p| p.into_inner());
            for (path, bytes) in groups {
                write_durably(&dir, &path, &bytes, &mut checked).map_err(|e| {
                    Error::transient(format!(
                        "writing events to {}: will be written again from the checkpoint",
                        path.display()
                    ))
                    .source(e)
                })?;
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::internal("the event writer stopped").source(e))?;
        written?;
        let mut last = self.announced.lock().unwrap_or_else(|p| p.into_inner());
        last.extend(announced);
        Ok(())
    }
}

/// Appends `bytes` to `path` and fsyncs it (and `dir` when the file is new);
/// the first time a file is met, a torn last line is cut off first.
fn write_durably(
    dir: &Path,
    path: &Path,
    bytes: &[u8],
    checked: &mut HashSet<PathBuf>,
) -> std::io::Result<()> {
    let existed = path.exists();
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)?;
    if existed && !checked.contains(path) {
        cut_torn_line(&mut file)?;
    }
    checked.insert(path.to_path_buf());
    file.write_all(bytes)?;
    file.sync_data()?;
    if !existed {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Cuts the file after its last newline: bytes after it are a line a crash
/// interrupted, which was never acknowledged and will be written again whole.
fn cut_torn_line(file: &mut File) -> std::io::Result<()> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            let keep = start + i as u64 + 1;
            if keep < len {
                tracing::warn!(
                    bytes = len - keep,
                    "cutting a torn last line off an event file"
                );
                file.set_len(keep)?;
                file.sync_data()?;
            }
            return Ok(());
        }
        end = start;
    }
    // No newline at all: the whole file is one torn line.
    file.set_len(0)?;
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_name_is_a_safe_file_name() {
        let sink = FileSink::open(tempfile::tempdir().unwrap().path().join("e")).unwrap();
        let f = |t: &str| {
            sink.file_of(t)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        };
        assert_eq!(f("public.items"), "public.items.jsonl");
        assert_eq!(f("\"a/b\".\"c d\""), "%22a%2Fb%22.%22c%20d%22.jsonl");
        assert_eq!(f("é"), "%C3%A9.jsonl");
    }

    #[test]
    fn a_torn_last_line_is_cut_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.jsonl");
        std::fs::write(&path, "{\"id\":\"a\"}\n{\"id\":\"b").unwrap();
        let mut checked = HashSet::new();
        write_durably(dir.path(), &path, b"{\"id\":\"b\"}\n", &mut checked).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"id\":\"a\"}\n{\"id\":\"b\"}\n"
        );
        // Checked once per process: later appends do not look again.
        write_durably(dir.path(), &path, b"{\"id\":\"c\"}\n", &mut checked).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
        let whole = dir.path().join("u.jsonl");
        std::fs::write(&whole, "{\"id\":").unwrap();
        write_durably(dir.path(), &whole, b"{}\n", &mut checked).unwrap();
        assert_eq!(std::fs::read_to_string(&whole).unwrap(), "{}\n");
    }

    #[test]
    fn urls_name_absolute_and_relative_directories() {
        assert_eq!(
            FileSink::path_from_url("file:///var/out?x=1").unwrap(),
            PathBuf::from("/var/out")
        );
        assert_eq!(
            FileSink::path_from_url("file://out/events").unwrap(),
            PathBuf::from("out/events")
        );
        assert!(FileSink::path_from_url("file://").is_err());
    }
}
