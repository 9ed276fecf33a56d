//! A log file rotated by size: once the next line would take it past its
//! limit, `name.log` becomes `name.log.1`, `name.log.1` becomes `name.log.2`,
//! and so on, the oldest past the count kept being deleted.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A log file that rotates itself by size. Each `write` is one log line (or
/// several), written whole to one file: a line is never split across two.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_size: u64,
    keep: usize,
    file: File,
    size: u64,
}

impl RotatingFile {
    /// Opens `path` to add to it (created, with its folder, when missing).
    /// It rotates before a write that would take it past `max_size` bytes,
    /// and keeps `keep` rotated files (`path.1` the newest); with `keep` 0 it
    /// starts afresh instead.
    pub fn open(path: &Path, max_size: u64, keep: usize) -> io::Result<RotatingFile> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = Self::append(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            max_size,
            keep,
            file,
            size,
        })
    }

    fn append(path: &Path) -> io::Result<File> {
        OpenOptions::new().create(true).append(true).open(path)
    }

    /// The path of the `n`th rotated file.
    fn rotated(&self, n: usize) -> PathBuf {
        let mut name = self.path.clone().into_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// Moves each file one number up, the current one to `.1`, dropping the
    /// one past `keep`, and opens a fresh current file.
    fn rotate(&mut self) -> io::Result<()> {
        if self.keep == 0 {
            self.file = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&self.path)?;
        } else {
            match std::fs::remove_file(self.rotated(self.keep)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            for n in (1..self.keep).rev() {
                match std::fs::rename(self.rotated(n), self.rotated(n + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            std::fs::rename(&self.path, self.rotated(1))?;
            self.file = Self::append(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.size > 0 && self.size + buf.len() as u64 > self.max_size {
            // A failed rotation must not lose the line: it goes on the
            // current file, past the limit, and the next write tries again.
            if let Err(e) = self.rotate() {
                let note = format!("(log rotation failed: {e})\n");
                let _ = self.file.write_all(note.as_bytes());
                self.size += note.len() as u64;
            }
        }
        self.file.write_all(buf)?;
        self.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: PathBuf) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    #[test]
    fn rotates_by_size_and_keeps_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs").join("combined.log");
        let mut f = RotatingFile::open(&path, 10, 2).unwrap();
        for line in ["aaaaaa\n", "bbbbbb\n", "cccccc\n", "dddddd\n"] {
            f.write_all(line.as_bytes()).unwrap();
        }
        assert_eq!(read(path.clone()), "dddddd\n");
        assert_eq!(read(f.rotated(1)), "cccccc\n");
        assert_eq!(read(f.rotated(2)), "bbbbbb\n");
        assert!(!f.rotated(3).exists(), "only two rotated files are kept");
        // A line longer than the limit is written whole.
        f.write_all(b"a line longer than ten bytes\n").unwrap();
        assert_eq!(read(path.clone()), "a line longer than ten bytes\n");
        // Reopened, it counts what the file holds already.
        drop(f);
        let mut f = RotatingFile::open(&path, 10, 2).unwrap();
        f.write_all(b"e\n").unwrap();
        assert_eq!(read(path), "e\n");
    }

    #[test]
    fn keeping_none_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("error.log");
        let mut f = RotatingFile::open(&path, 4, 0).unwrap();
        f.write_all(b"abc\n").unwrap();
        f.write_all(b"def\n").unwrap();
        assert_eq!(read(path.clone()), "def\n");
        assert!(!f.rotated(1).exists());
    }
}
