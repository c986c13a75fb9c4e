//! An output file that is flushed to disk in the background as it grows, so the commit's
//! final `fsync` waits only for the last few megabytes.
//!
//! Without it the kernel keeps a run's output in the page cache until the commit syncs it, and
//! then writes all of it while the run waits: 350 MB of NDJSON took about half a second here,
//! a fifth of a one-million-row CSV run. Every [`SYNC_EVERY`] bytes a helper thread starts
//! `fdatasync` on a second handle of the file while the run goes on writing; at most one runs
//! at a time (a new one starts only once the last has ended), and the writer never waits for
//! it except at the end. A failed early sync fails the next write or the final sync: after a
//! failed `fsync` Linux may have dropped the dirty pages, so the run must not commit. (RocksDB's `bytes_per_sync` and PostgreSQL's
//! `backend_flush_after` do the same for the same reason.)

use std::fs::File;
use std::io::{self, Write};
use std::thread::JoinHandle;

/// Bytes written between two background syncs.
pub const SYNC_EVERY: u64 = 8 << 20;

/// A file being written, synced in the background every [`SYNC_EVERY`] bytes.
pub struct SyncingFile {
    file: File,
    unsynced: u64,
    running: Option<JoinHandle<io::Result<()>>>,
    /// The background sync: `File::sync_data`, or a failing one in tests.
    sync: fn(&File) -> io::Result<()>,
}

impl SyncingFile {
    /// Wraps a file just created for writing.
    pub fn new(file: File) -> Self {
        SyncingFile {
            file,
            unsynced: 0,
            running: None,
            sync: File::sync_data,
        }
    }

    /// The result of the background sync, once it has ended; `wait` waits for it.
    fn reap(&mut self, wait: bool) -> io::Result<()> {
        match self.running.take() {
            Some(sync) if wait || sync.is_finished() => sync
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the background sync thread panicked"))),
            still_running => {
                self.running = still_running;
                Ok(())
            }
        }
    }

    /// Starts a background sync of what has been written so far, unless one is still running.
    /// Only a failed sync is an error: without a second handle or a thread the file is simply
    /// synced whole at the end, as before.
    fn start(&mut self) -> io::Result<()> {
        self.reap(false)?;
        if self.running.is_some() {
            return Ok(());
        }
        self.unsynced = 0;
        if let Ok(handle) = self.file.try_clone() {
            let sync = self.sync;
            self.running = std::thread::Builder::new()
                .name("medplat-sync".into())
                .spawn(move || sync(&handle))
                .ok();
        }
        Ok(())
    }

    /// Waits for any background sync, then syncs the rest, data and metadata.
    pub fn sync_all(mut self) -> io::Result<()> {
        self.reap(true)?;
        self.file.sync_all()
    }
}

impl Write for SyncingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.unsynced += n as u64;
        if self.unsynced >= SYNC_EVERY {
            self.start()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for SyncingFile {
    fn drop(&mut self) {
        // A run that fails mid-write still waits for its helper thread rather than leave it.
        let _ = self.reap(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_file_is_written_whole_through_background_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let mut f = SyncingFile::new(File::create(&path).unwrap());
        let chunk = vec![b'x'; 1 << 20];
        let mut started = 0;
        for _ in 0..(2 * SYNC_EVERY / chunk.len() as u64 + 3) {
            f.write_all(&chunk).unwrap();
            if f.running.is_some() && f.unsynced == 0 {
                started += 1;
            }
        }
        assert!(started >= 1, "a background sync started");
        f.sync_all().unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(len, (2 * SYNC_EVERY / (1 << 20) + 3) * (1 << 20));
    }

    #[test]
    fn a_failed_background_sync_fails_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let failing = |_: &File| -> io::Result<()> { Err(io::Error::other("EIO from the disk")) };
        let chunk = vec![b'x'; 1 << 20];
        let open = || {
            let mut f = SyncingFile::new(File::create(dir.path().join("out")).unwrap());
            f.sync = failing;
            for _ in 0..SYNC_EVERY / chunk.len() as u64 {
                f.write_all(&chunk).unwrap();
            }
            assert!(f.running.is_some(), "the background sync started");
            f
        };
        // Reported by the final sync...
        let err = open().sync_all().unwrap_err();
        assert!(err.to_string().contains("EIO from the disk"), "{err}");
        // ...or by the first write after it ended.
        let mut f = open();
        while !f.running.as_ref().unwrap().is_finished() {
            std::thread::yield_now();
        }
        let err = (0..SYNC_EVERY / chunk.len() as u64)
            .find_map(|_| f.write_all(&chunk).err())
            .expect("a later write reports the failed sync");
        assert!(err.to_string().contains("EIO from the disk"), "{err}");
    }
}
