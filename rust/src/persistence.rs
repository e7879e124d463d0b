//! Never lose what was learned: versioned, checksummed snapshots of a
//! tracker, written atomically, the last two kept, saved by a background
//! thread.
//!
//! File layout (little-endian): 8-byte magic `ZETAFAST`, u32 format version,
//! u64 payload length, u32 CRC-32 of the payload, then the payload (the
//! tracker state in postcard encoding).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::errors::ZetaError;
use crate::tracker::{PerformanceTracker, TrackerState};

const MAGIC: &[u8; 8] = b"ZETAFAST";
/// Bumped whenever the payload's meaning changes; older files are refused
/// with a clear error rather than misread.
pub const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 8 + 4;

/// Serialises a state into the file format.
pub fn encode(state: &TrackerState) -> Result<Vec<u8>, ZetaError> {
    let payload = postcard::to_stdvec(state).map_err(|err| ZetaError::Snapshot {
        reason: format!("cannot encode: {err}"),
    })?;
    let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    Ok(bytes)
}

fn snapshot_error(reason: String) -> ZetaError {
    ZetaError::Snapshot { reason }
}

/// Parses the file format, telling truncation, corruption and a wrong
/// version apart.
pub fn decode(bytes: &[u8]) -> Result<TrackerState, ZetaError> {
    let header = bytes.get(..HEADER_LEN).ok_or_else(|| {
        snapshot_error(format!(
            "truncated: {} bytes, shorter than the {HEADER_LEN}-byte header",
            bytes.len()
        ))
    })?;
    let (magic, rest) = header.split_at(8);
    if magic != MAGIC {
        return Err(snapshot_error(
            "not a zeta_fast snapshot (bad magic bytes)".into(),
        ));
    }
    let (version, rest) = rest.split_at(4);
    let version = u32::from_le_bytes(version.try_into().unwrap_or_default());
    if version != FORMAT_VERSION {
        return Err(snapshot_error(format!(
            "format version {version}, this zeta_fast reads version {FORMAT_VERSION}"
        )));
    }
    let (length, checksum) = rest.split_at(8);
    let length = u64::from_le_bytes(length.try_into().unwrap_or_default());
    let checksum = u32::from_le_bytes(checksum.try_into().unwrap_or_default());
    let payload = bytes.get(HEADER_LEN..).unwrap_or_default();
    if (payload.len() as u64) < length {
        return Err(snapshot_error(format!(
            "truncated: payload has {} of {length} bytes",
            payload.len()
        )));
    }
    if payload.len() as u64 > length {
        return Err(snapshot_error(format!(
            "corrupted: {} bytes after the {length}-byte payload",
            payload.len() as u64 - length
        )));
    }
    let actual = crc32fast::hash(payload);
    if actual != checksum {
        return Err(snapshot_error(format!(
            "corrupted: checksum {actual:08x}, header says {checksum:08x}"
        )));
    }
    postcard::from_bytes(payload).map_err(|err| snapshot_error(format!("corrupted payload: {err}")))
}

/// The previous snapshot is kept beside the current one under this suffix.
pub fn previous_path(path: &Path) -> PathBuf {
    with_suffix(path, ".prev")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Writes `bytes` to `path` so that a crash at any point leaves either the
/// old file or the new one whole: write a temporary file, fsync it, move the
/// current file to `.prev`, rename the temporary over `path`, fsync the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = with_suffix(path, ".tmp");
    {
        let mut file = File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    if path.exists() {
        fs::rename(path, previous_path(path))?;
    }
    fs::rename(&temporary, path)?;
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        // Makes the renames themselves durable.
        File::open(folder)?.sync_all()?;
    }
    Ok(())
}

/// Which file a restore came from, and what was wrong with the newer one.
#[derive(Debug, Clone, PartialEq)]
pub struct Restored {
    pub state: TrackerState,
    pub path: PathBuf,
    /// Set when the current file was unusable and `.prev` was loaded instead.
    pub fell_back_because: Option<String>,
}

/// Loads the newest good snapshot: `path`, else `path.prev`. `Ok(None)` when
/// neither exists (a first start); an error naming both problems when
/// neither is usable, so nothing is ever silently reset.
pub fn load(path: &Path) -> Result<Option<Restored>, ZetaError> {
    let previous = previous_path(path);
    if !path.exists() && !previous.exists() {
        return Ok(None);
    }
    let current_problem = match read_one(path) {
        Ok(state) => {
            return Ok(Some(Restored {
                state,
                path: path.to_owned(),
                fell_back_because: None,
            }))
        }
        Err(problem) => problem,
    };
    match read_one(&previous) {
        Ok(state) => Ok(Some(Restored {
            state,
            path: previous,
            fell_back_because: Some(current_problem),
        })),
        Err(previous_problem) => Err(snapshot_error(format!(
            "no usable snapshot: {} ({current_problem}); {} ({previous_problem})",
            path.display(),
            previous.display()
        ))),
    }
}

fn read_one(path: &Path) -> Result<TrackerState, String> {
    let bytes = fs::read(path).map_err(|err| err.to_string())?;
    decode(&bytes).map_err(|err| err.to_string())
}

/// Saves a tracker's state to `path` now.
pub fn save(tracker: &PerformanceTracker, path: &Path) -> Result<usize, ZetaError> {
    let bytes = encode(&tracker.state())?;
    write_atomic(path, &bytes)
        .map_err(|err| snapshot_error(format!("cannot write {}: {err}", path.display())))?;
    Ok(bytes.len())
}

/// What the saver has done, for metrics and tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SaverStatus {
    pub saves: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    pub last_bytes: usize,
}

struct Shared {
    stop: Mutex<bool>,
    wake: Condvar,
    status: Mutex<SaverStatus>,
}

/// A background thread that saves a tracker every interval, and once more
/// when stopped. It never touches the record path: it reads windows the way
/// any reader does.
pub struct Saver {
    shared: Arc<Shared>,
    handle: Option<JoinHandle<()>>,
    tracker: Arc<PerformanceTracker>,
    path: PathBuf,
}

impl Saver {
    /// Starts saving `tracker` to `path` every `interval`.
    pub fn start(
        tracker: Arc<PerformanceTracker>,
        path: PathBuf,
        interval: Duration,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            stop: Mutex::new(false),
            wake: Condvar::new(),
            status: Mutex::new(SaverStatus::default()),
        });
        let thread_shared = Arc::clone(&shared);
        let thread_tracker = Arc::clone(&tracker);
        let thread_path = path.clone();
        let handle = std::thread::Builder::new()
            .name("zeta-fast-saver".into())
            .spawn(move || loop {
                let stopped = {
                    let Ok(guard) = thread_shared.stop.lock() else {
                        return;
                    };
                    let Ok((guard, _)) =
                        thread_shared
                            .wake
                            .wait_timeout_while(guard, interval, |stop| !*stop)
                    else {
                        return;
                    };
                    *guard
                };
                Self::save_into(&thread_shared, &thread_tracker, &thread_path);
                if stopped {
                    return;
                }
            })?;
        Ok(Self {
            shared,
            handle: Some(handle),
            tracker,
            path,
        })
    }

    fn save_into(shared: &Shared, tracker: &PerformanceTracker, path: &Path) {
        let result = save(tracker, path);
        if let Ok(mut status) = shared.status.lock() {
            match result {
                Ok(bytes) => {
                    status.saves += 1;
                    status.last_bytes = bytes;
                }
                Err(err) => {
                    status.failures += 1;
                    status.last_error = Some(err.to_string());
                }
            }
        }
    }

    /// Saves now, on the caller's thread.
    pub fn save_now(&self) -> Result<usize, ZetaError> {
        let result = save(&self.tracker, &self.path);
        if let Ok(mut status) = self.shared.status.lock() {
            match &result {
                Ok(bytes) => {
                    status.saves += 1;
                    status.last_bytes = *bytes;
                }
                Err(err) => {
                    status.failures += 1;
                    status.last_error = Some(err.to_string());
                }
            }
        }
        result
    }

    /// What the saver has done so far.
    pub fn status(&self) -> SaverStatus {
        self.shared
            .status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Stops the thread after one final save; idempotent.
    pub fn stop(&mut self) {
        if let Ok(mut stop) = self.shared.stop.lock() {
            *stop = true;
        }
        self.shared.wake.notify_all();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }

    /// The snapshot file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Saver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An exclusive lock on `path.lock`, held while a tracker uses the file, so
/// two trackers (in any processes) never write one snapshot. The kernel
/// drops it when the process dies, `kill -9` included.
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Takes the lock or says who could not.
    pub fn acquire(path: &Path) -> Result<Self, ZetaError> {
        let lock_path = with_suffix(path, ".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|err| snapshot_error(format!("cannot open {}: {err}", lock_path.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::io::AsRawFd;
            // SAFETY: flock on a descriptor we own; non-blocking.
            let status = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if status != 0 {
                return Err(snapshot_error(format!(
                    "{} is in use by another tracker (lock {} is held)",
                    path.display(),
                    lock_path.display()
                )));
            }
        }
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::window::WindowConfig;

    fn tracker_with_data() -> PerformanceTracker {
        let tracker =
            PerformanceTracker::new(WindowConfig::default(), Clock::manual(9_000_000)).unwrap();
        for i in 0..50 {
            tracker.record("m", "r", "t", i % 5 != 0, i as f64).unwrap();
        }
        tracker
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("zeta-fast-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn encode_decode_round_trip() {
        let state = tracker_with_data().state();
        assert_eq!(decode(&encode(&state).unwrap()).unwrap(), state);
    }

    #[test]
    fn truncation_corruption_and_versions_are_told_apart() {
        let bytes = encode(&tracker_with_data().state()).unwrap();
        let short = decode(&bytes[..10]).unwrap_err().to_string();
        assert!(short.contains("truncated"), "{short}");
        let cut = decode(&bytes[..bytes.len() - 3]).unwrap_err().to_string();
        assert!(cut.contains("truncated"), "{cut}");
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        assert!(decode(&flipped)
            .unwrap_err()
            .to_string()
            .contains("checksum"));
        let mut future = bytes.clone();
        future[8] = 99;
        assert!(decode(&future)
            .unwrap_err()
            .to_string()
            .contains("format version 99"));
        let mut alien = bytes;
        alien[0] = b'X';
        assert!(decode(&alien).unwrap_err().to_string().contains("magic"));
    }

    #[test]
    fn a_bad_current_file_falls_back_to_the_previous_one() {
        let dir = temp_dir("fallback");
        let path = dir.join("state.zfs");
        let tracker = tracker_with_data();
        save(&tracker, &path).unwrap();
        tracker.record("m", "r", "t", true, 1.0).unwrap();
        save(&tracker, &path).unwrap();
        assert!(previous_path(&path).exists());
        // Corrupt the newest: the previous one (50 records) comes back.
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let restored = load(&path).unwrap().unwrap();
        assert_eq!(restored.path, previous_path(&path));
        assert!(restored.fell_back_because.unwrap().contains("checksum"));
        // Both bad: an error, never a silent reset.
        fs::write(previous_path(&path), b"ZETAFAST").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("no usable snapshot"), "{err}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn nothing_on_disk_is_a_fresh_start() {
        let dir = temp_dir("fresh");
        assert_eq!(load(&dir.join("none.zfs")).unwrap(), None);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn saver_saves_on_interval_and_on_stop() {
        let dir = temp_dir("saver");
        let path = dir.join("state.zfs");
        let tracker = Arc::new(tracker_with_data());
        let mut saver = Saver::start(
            Arc::clone(&tracker),
            path.clone(),
            Duration::from_millis(20),
        )
        .unwrap();
        // Waits on the state, not a fixed sleep: a loaded machine (tests in
        // parallel on 2 cores) may run the saver late.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while saver.status().saves < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(saver.status().saves >= 2);
        tracker.record("m", "r", "t", true, 1.0).unwrap();
        saver.stop();
        let restored = load(&path).unwrap().unwrap();
        let lifetime: u64 = restored
            .state
            .keys
            .iter()
            .map(|(_, _, _, w)| {
                w.slots.iter().map(|(c, _)| c & 0xFFFF_FFFF).sum::<u64>() + w.retired.requests
            })
            .sum();
        assert_eq!(lifetime, 51);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_second_lock_on_one_file_is_refused() {
        let dir = temp_dir("lock");
        let path = dir.join("state.zfs");
        let first = FileLock::acquire(&path).unwrap();
        let err = FileLock::acquire(&path).err().unwrap().to_string();
        assert!(err.contains("in use by another tracker"), "{err}");
        drop(first);
        assert!(FileLock::acquire(&path).is_ok());
        fs::remove_dir_all(dir).unwrap();
    }
}
