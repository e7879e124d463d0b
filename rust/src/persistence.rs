//! Never lose what was learned: versioned, checksummed files written
//! atomically with the previous one kept (a tracker's snapshot, the learned
//! router's state), and the background thread that saves a tracker.
//!
//! File layout (little-endian): an 8-byte magic naming the kind of file
//! (`ZETAFAST` for a snapshot), u32 format version, u64 payload length, u32
//! CRC-32 of the payload, then the payload (postcard encoding).

use std::fs::{self, File, FileType, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::errors::ZetaError;
use crate::tracker::{PerformanceTracker, TrackerState};

/// Bumped whenever the payload's meaning changes; older files are refused
/// with a clear error rather than misread.
pub const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 8 + 4;

/// What a framed file holds: the magic that names it, the version this
/// build reads and writes, and how messages call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileKind {
    pub magic: &'static [u8; 8],
    pub version: u32,
    pub name: &'static str,
    /// Said after "bad magic bytes": what such a file usually is.
    pub bad_magic_hint: &'static str,
}

/// A tracker's snapshot.
pub const SNAPSHOT: FileKind = FileKind {
    magic: b"ZETAFAST",
    version: FORMAT_VERSION,
    name: "snapshot",
    bad_magic_hint: "",
};

/// Frames `payload` as a file of `kind`: header, then the payload.
pub fn frame(kind: &FileKind, payload: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
    bytes.extend_from_slice(kind.magic);
    bytes.extend_from_slice(&kind.version.to_le_bytes());
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

fn snapshot_error(reason: String) -> ZetaError {
    ZetaError::Snapshot { reason }
}

/// The payload of a file of `kind`, telling truncation, corruption, another
/// kind of file and a wrong version apart.
pub fn unframe<'a>(kind: &FileKind, bytes: &'a [u8]) -> Result<&'a [u8], ZetaError> {
    let header = bytes.get(..HEADER_LEN).ok_or_else(|| {
        snapshot_error(format!(
            "truncated: {} bytes, shorter than the {HEADER_LEN}-byte header",
            bytes.len()
        ))
    })?;
    let (magic, rest) = header.split_at(8);
    if magic != kind.magic {
        return Err(snapshot_error(format!(
            "not a zeta_fast {} (bad magic bytes{})",
            kind.name, kind.bad_magic_hint
        )));
    }
    let (version, rest) = rest.split_at(4);
    let version = u32::from_le_bytes(version.try_into().unwrap_or_default());
    if version != kind.version {
        return Err(snapshot_error(format!(
            "format version {version}, this zeta_fast reads version {}",
            kind.version
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
    Ok(payload)
}

/// Serialises a state into the snapshot format.
pub fn encode(state: &TrackerState) -> Result<Vec<u8>, ZetaError> {
    let payload = postcard::to_stdvec(state).map_err(|err| ZetaError::Snapshot {
        reason: format!("cannot encode: {err}"),
    })?;
    Ok(frame(&SNAPSHOT, &payload))
}

/// Parses the snapshot format.
pub fn decode(bytes: &[u8]) -> Result<TrackerState, ZetaError> {
    postcard::from_bytes(unframe(&SNAPSHOT, bytes)?)
        .map_err(|err| snapshot_error(format!("corrupted payload: {err}")))
}

/// The previous file is kept beside the current one under this suffix.
pub fn previous_path(path: &Path) -> PathBuf {
    with_suffix(path, ".prev")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn describe(file_type: &FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "a named pipe (FIFO)";
        }
        if file_type.is_socket() {
            return "a socket";
        }
        if file_type.is_char_device() {
            return "a character device";
        }
        if file_type.is_block_device() {
            return "a block device";
        }
    }
    if file_type.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

fn not_regular(path: &Path, file_type: &FileType) -> String {
    format!(
        "{} is {}, not a regular file",
        path.display(),
        describe(file_type)
    )
}

/// Opens `path` refusing anything but a regular file (a symlink to one is
/// fine). Checked before opening, for a message that says what it is; then
/// opened non-blocking, so a named pipe or a device swapped in since answers
/// at once instead of waiting for a writer, and checked again on the opened
/// descriptor.
fn open_regular(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    let refuse = |file_type: &FileType| {
        io::Error::new(io::ErrorKind::InvalidInput, not_regular(path, file_type))
    };
    if let Ok(metadata) = fs::metadata(path) {
        if !metadata.is_file() {
            return Err(refuse(&metadata.file_type()));
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // No effect on a regular file's reads and writes.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let file_type = file.metadata()?.file_type();
    if !file_type.is_file() {
        return Err(refuse(&file_type));
    }
    Ok(file)
}

/// Writes `bytes` to `path` so that a crash at any point leaves either the
/// old file or the new one whole at `path`: write a temporary file, fsync it,
/// link the current file as `.prev`, rename the temporary over `path`, fsync
/// the folder.
///
/// One writer per path at a time: the temporary's name is fixed (a crash
/// leaves one stale file, overwritten next time, not one per writer), so the
/// caller serialises writers (the [`Saver`] holds a mutex, [`FileLock`] keeps
/// other processes off the file).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temporary = with_suffix(path, ".tmp");
    {
        let mut file = open_regular(
            &temporary,
            OpenOptions::new().write(true).create(true).truncate(true),
        )?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    keep_as_previous(path)?;
    // One rename over the current file: at every point `path` is a whole
    // file, the old one or the new one (a kill between moving it to `.prev`
    // and this rename would leave none, and the next start on `.prev`).
    fs::rename(&temporary, path)?;
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        // Makes the renames themselves durable.
        File::open(folder)?.sync_all()?;
    }
    Ok(())
}

/// Makes `.prev` a copy of the current file (none on a first save) without
/// moving the current one: a hard link, or a copy where the file system has
/// none.
fn keep_as_previous(path: &Path) -> io::Result<()> {
    let previous = previous_path(path);
    match fs::remove_file(&previous) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
        _ => {}
    }
    match fs::hard_link(path, &previous) {
        Ok(()) => Ok(()),
        // A first save has no current file to keep.
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => match fs::copy(path, &previous) {
            Ok(_) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err),
        },
    }
}

/// Which file a load came from, and what was wrong with the newer one.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<T> {
    pub state: T,
    pub path: PathBuf,
    /// Set when the current file was unusable and `.prev` was loaded instead.
    pub fell_back_because: Option<String>,
}

/// A tracker's restored snapshot.
pub type Restored = Loaded<TrackerState>;

/// Refuses a path that exists and is no regular file (after symlinks): it
/// is a mistake in the configuration, not a damaged file to fall back from.
fn refuse_special(path: &Path, kind: &FileKind) -> Result<(), ZetaError> {
    match fs::metadata(path) {
        Ok(metadata) if !metadata.is_file() => Err(snapshot_error(format!(
            "{}: refusing to read it as a {}",
            not_regular(path, &metadata.file_type()),
            kind.name
        ))),
        _ => Ok(()),
    }
}

/// Loads the newest good file of `kind`: `path`, else `path.prev`, each
/// checked by `decode`. `Ok(None)` when neither exists (a first start); an
/// error naming both problems when neither is usable, so nothing is ever
/// silently reset; an error when either is not a regular file.
pub fn load_newest<T>(
    path: &Path,
    kind: &FileKind,
    decode: impl Fn(&[u8]) -> Result<T, ZetaError>,
) -> Result<Option<Loaded<T>>, ZetaError> {
    let previous = previous_path(path);
    refuse_special(path, kind)?;
    refuse_special(&previous, kind)?;
    if !path.exists() && !previous.exists() {
        return Ok(None);
    }
    let read = |path: &Path| -> Result<T, String> {
        let mut bytes = Vec::new();
        open_regular(path, OpenOptions::new().read(true))
            .and_then(|mut file| file.read_to_end(&mut bytes))
            .map_err(|err| err.to_string())?;
        decode(&bytes).map_err(|err| match err {
            ZetaError::Snapshot { reason } => reason,
            other => other.to_string(),
        })
    };
    let current_problem = match read(path) {
        Ok(state) => {
            return Ok(Some(Loaded {
                state,
                path: path.to_owned(),
                fell_back_because: None,
            }))
        }
        Err(problem) => problem,
    };
    match read(&previous) {
        Ok(state) => Ok(Some(Loaded {
            state,
            path: previous,
            fell_back_because: Some(current_problem),
        })),
        Err(previous_problem) => Err(snapshot_error(format!(
            "no usable {}: {} ({current_problem}); {} ({previous_problem})",
            kind.name,
            path.display(),
            previous.display()
        ))),
    }
}

/// Loads the newest good snapshot (see [`load_newest`]).
pub fn load(path: &Path) -> Result<Option<Restored>, ZetaError> {
    load_newest(path, &SNAPSHOT, decode)
}

/// Saves a tracker's state to `path` now. Not serialised: the [`Saver`]'s
/// saves are; call this only on a file no saver writes.
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
    /// The most recent failure's message, kept after later saves succeed.
    pub last_error: Option<String>,
    pub last_bytes: usize,
}

struct Shared {
    stop: Mutex<bool>,
    wake: Condvar,
    /// Held for a whole save and its status update: one save of the file at
    /// a time (the background thread's and `save_now`'s share one temporary
    /// file and the rename of the current one to `.prev`), and the status
    /// records their outcomes in the order they happened.
    writing: Mutex<()>,
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
    ) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            stop: Mutex::new(false),
            wake: Condvar::new(),
            writing: Mutex::new(()),
            status: Mutex::new(SaverStatus::default()),
        });
        let thread_shared = Arc::clone(&shared);
        let thread_tracker = Arc::clone(&tracker);
        let thread_path = path.clone();
        let handle = std::thread::Builder::new()
            .name("zeta-fast-saver".into())
            .spawn(move || loop {
                {
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
                    if *guard {
                        // `stop` makes the final save itself, to report it.
                        return;
                    }
                }
                // A failure is counted in the status; the thread carries on.
                let _ = Self::save_with(&thread_shared, &thread_tracker, &thread_path);
            })?;
        Ok(Self {
            shared,
            handle: Some(handle),
            tracker,
            path,
        })
    }

    fn save_with(
        shared: &Shared,
        tracker: &PerformanceTracker,
        path: &Path,
    ) -> Result<usize, ZetaError> {
        // A poisoned lock only means another save panicked: the file is
        // still written whole or not at all, so carry on.
        let _writing = shared
            .writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = save(tracker, path);
        if let Ok(mut status) = shared.status.lock() {
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

    /// Saves now, on the caller's thread (never at the same time as the
    /// background thread).
    pub fn save_now(&self) -> Result<usize, ZetaError> {
        Self::save_with(&self.shared, &self.tracker, &self.path)
    }

    /// What the saver has done so far.
    pub fn status(&self) -> SaverStatus {
        self.shared
            .status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Stops the thread, then makes the final save on the caller's thread and
    /// returns its outcome: what a close reports (an earlier failure that a
    /// later save superseded is only in [`Self::status`]). Idempotent: once
    /// stopped, nothing more is saved and `Ok(None)` comes back.
    pub fn stop(&mut self) -> Result<Option<usize>, ZetaError> {
        let Some(handle) = self.handle.take() else {
            return Ok(None);
        };
        if let Ok(mut stop) = self.shared.stop.lock() {
            *stop = true;
        }
        self.shared.wake.notify_all();
        let _ = handle.join();
        self.save_now().map(Some)
    }

    /// The snapshot file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Saver {
    fn drop(&mut self) {
        // Nobody to tell of a failure here; `close` reports it.
        let _ = self.stop();
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
        let file = open_regular(
            &lock_path,
            OpenOptions::new().create(true).truncate(false).write(true),
        )
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

    /// Polls `condition` until it holds or `within` passes: a state-based
    /// wait, so a loaded machine (tests in parallel on 2 cores) that runs
    /// the saver late makes the test slower, not wrong.
    fn wait_until(within: Duration, condition: impl Fn() -> bool) -> bool {
        let deadline = std::time::Instant::now() + within;
        while !condition() {
            if std::time::Instant::now() > deadline {
                return false;
            }
            // A pause between polls, not a wait for the state: frees the core.
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    fn lifetime_requests(state: &TrackerState) -> u64 {
        state
            .keys
            .iter()
            .map(|(_, _, _, w)| {
                w.slots.iter().map(|(c, _)| c & 0xFFFF_FFFF).sum::<u64>() + w.retired.requests
            })
            .sum()
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
        assert!(wait_until(Duration::from_secs(30), || saver.status().saves >= 2));
        tracker.record("m", "r", "t", true, 1.0).unwrap();
        let saves = saver.status().saves;
        assert!(saver.stop().unwrap().is_some());
        assert!(saver.status().saves > saves, "stop makes a final save");
        assert_eq!(saver.stop().unwrap(), None, "a second stop saves nothing");
        let restored = load(&path).unwrap().unwrap();
        assert_eq!(lifetime_requests(&restored.state), 51);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn saves_from_many_threads_racing_the_saver_all_succeed() {
        let dir = temp_dir("racing");
        let path = dir.join("state.zfs");
        let tracker = Arc::new(tracker_with_data());
        // A 1 ms interval keeps the background thread saving nearly always.
        let mut saver =
            Saver::start(Arc::clone(&tracker), path.clone(), Duration::from_millis(1)).unwrap();
        let (threads, saves_each) = (4, 40);
        let start = std::sync::Barrier::new(threads);
        let outcomes: Vec<Result<usize, ZetaError>> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        start.wait();
                        (0..saves_each)
                            .map(|_| {
                                tracker.record("m", "r", "t", true, 1.0).unwrap();
                                saver.save_now()
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        let failed: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
        assert!(
            failed.is_empty(),
            "{} of {} failed: {failed:?}",
            failed.len(),
            outcomes.len()
        );
        assert!(saver.stop().is_ok());
        let status = saver.status();
        assert_eq!(status.failures, 0, "{:?}", status.last_error);
        assert!(status.saves > (threads * saves_each) as u64);
        let restored = load(&path).unwrap().unwrap();
        assert_eq!(restored.fell_back_because, None);
        assert_eq!(
            lifetime_requests(&restored.state),
            50 + (threads * saves_each) as u64
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn stop_reports_the_final_save_not_an_earlier_failure() {
        let dir = temp_dir("stop-reports");
        let folder = dir.join("state");
        fs::create_dir_all(&folder).unwrap();
        let path = folder.join("state.zfs");
        let tracker = Arc::new(tracker_with_data());
        let mut saver =
            Saver::start(Arc::clone(&tracker), path.clone(), Duration::from_millis(2)).unwrap();
        // A regular file where the folder was: writes fail, for root too.
        fs::remove_dir_all(&folder).unwrap();
        fs::write(&folder, b"").unwrap();
        assert!(wait_until(Duration::from_secs(30), || saver
            .status()
            .failures
            >= 2));
        let error = saver.status().last_error.unwrap();
        assert!(
            error.contains(&format!("cannot write {}", path.display())),
            "{error}"
        );
        assert!(saver.save_now().is_err());
        // The fault clears: the thread, still alive, saves again.
        fs::remove_file(&folder).unwrap();
        fs::create_dir_all(&folder).unwrap();
        let saves = saver.status().saves;
        assert!(wait_until(Duration::from_secs(30), || saver.status().saves > saves));
        assert!(saver.stop().unwrap().is_some());
        assert!(load(&path).unwrap().is_some());

        // A final save that fails is what stop reports.
        let mut saver = Saver::start(tracker, path.clone(), Duration::from_secs(3600)).unwrap();
        fs::remove_dir_all(&folder).unwrap();
        let error = saver.stop().unwrap_err().to_string();
        assert!(
            error.contains(&format!("cannot write {}", path.display())),
            "{error}"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    /// Runs `work` on a thread and gives up waiting after `within`, so a call
    /// that blocks fails the test instead of hanging it.
    #[cfg(unix)]
    fn within<T: Send + 'static>(
        within: Duration,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (send, receive) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = send.send(work());
        });
        receive.recv_timeout(within).ok()
    }

    #[cfg(unix)]
    fn make_fifo(path: &Path) {
        use std::os::unix::ffi::OsStrExt;
        let name = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
    }

    #[cfg(unix)]
    #[test]
    fn a_named_pipe_is_refused_without_blocking() {
        let dir = temp_dir("fifo");
        for suffix in ["", ".prev", ".lock", ".tmp"] {
            let path = dir.join(format!("state{}.zfs", suffix.len()));
            let pipe = with_suffix(&path, suffix);
            make_fifo(&pipe);
            let (error, expected) = match suffix {
                ".lock" => {
                    let path = path.clone();
                    let result = within(Duration::from_secs(30), move || {
                        FileLock::acquire(&path).err().map(|e| e.to_string())
                    });
                    (
                        result.expect("FileLock::acquire blocked on a named pipe"),
                        "",
                    )
                }
                ".tmp" => {
                    let path = path.clone();
                    let result = within(Duration::from_secs(30), move || {
                        save(&tracker_with_data(), &path)
                            .err()
                            .map(|e| e.to_string())
                    });
                    (result.expect("save blocked on a named pipe"), "")
                }
                _ => {
                    let path = path.clone();
                    let result = within(Duration::from_secs(30), move || {
                        load(&path).err().map(|e| e.to_string())
                    });
                    (
                        result.expect("load blocked on a named pipe"),
                        ": refusing to read it as a snapshot",
                    )
                }
            };
            let error = error.unwrap_or_default();
            let says = format!(
                "{} is a named pipe (FIFO), not a regular file{expected}",
                pipe.display()
            );
            assert!(error.contains(&says), "{suffix:?}: {error}");
        }
        fs::remove_dir_all(dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_to_a_snapshot_is_followed_and_a_folder_refused() {
        let dir = temp_dir("links");
        let real = dir.join("real.zfs");
        save(&tracker_with_data(), &real).unwrap();
        let link = dir.join("link.zfs");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(lifetime_requests(&load(&link).unwrap().unwrap().state), 50);
        let folder = dir.join("folder.zfs");
        fs::create_dir(&folder).unwrap();
        let error = load(&folder).unwrap_err().to_string();
        assert!(
            error.contains("is a directory, not a regular file"),
            "{error}"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn another_kind_of_framed_file_is_not_a_snapshot() {
        let other = FileKind {
            magic: b"SOMEKIND",
            version: 7,
            name: "thing",
            bad_magic_hint: "",
        };
        let framed = frame(&other, b"payload");
        assert_eq!(unframe(&other, &framed).unwrap(), b"payload");
        let error = decode(&framed).unwrap_err().to_string();
        assert!(
            error.contains("not a zeta_fast snapshot (bad magic bytes)"),
            "{error}"
        );
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
