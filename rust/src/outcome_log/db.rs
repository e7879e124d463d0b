//! The outcome log's SQLite file: opening it (WAL, the schema, columns added
//! since the first release), appending a batch in one transaction, pruning.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode};

use super::insert::Insert;
use super::row::{LogRow, Scratch, COLUMNS};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS outcomes (
    ts_ms INTEGER NOT NULL,
    model TEXT NOT NULL,
    replica TEXT NOT NULL,
    task TEXT NOT NULL,
    complexity REAL NOT NULL,
    context TEXT,
    outcome TEXT NOT NULL,
    success INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    ttft_ms REAL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost REAL NOT NULL,
    capability REAL NOT NULL,
    score REAL NOT NULL,
    adjustment REAL NOT NULL,
    penalties TEXT NOT NULL,
    runners_up TEXT NOT NULL,
    profile TEXT
);
CREATE INDEX IF NOT EXISTS outcomes_ts ON outcomes (ts_ms);
-- no (model, ts_ms) index: nothing queries by model, and it cost a B-tree insert per row
";

/// Columns added after the first release: added to older files on open.
const ADDED_COLUMNS: [(&str, &str); 4] = [
    ("learned", "INTEGER"),
    ("category", "TEXT"),
    ("features", "BLOB"),
    ("request_id", "TEXT"),
];

/// How long a write waits for another process's lock before the batch is
/// kept for the next round: never long, the queue keeps filling meanwhile.
const BUSY_TIMEOUT: Duration = Duration::from_millis(100);

/// Whether an error says the file itself is broken (not a passing lock).
pub fn is_corrupt(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

/// Opens (creating) the log at `path`, ready for appends.
pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        // A folder that cannot be made shows up as the open's error.
        let _ = std::fs::create_dir_all(folder);
    }
    let db = Connection::open(path)?;
    db.busy_timeout(BUSY_TIMEOUT)?;
    // 16 KiB pages for a new file (an existing one keeps its own): a row is
    // ~600 bytes, and fewer, larger pages mean fewer page splits and WAL
    // frames per row. Set before WAL mode, the only time it takes.
    db.execute_batch("PRAGMA page_size=16384")?;
    // WAL: readers (exports, dashboards) never block the writer.
    let _mode: String = db.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
    // WAL + NORMAL: a crash loses at most the last transactions, never the file.
    // A page cache and a memory map large enough that appending to the
    // indexes does not go back to the file for pages (a pread per page cost
    // more than the insert itself).
    db.execute_batch(
        "PRAGMA synchronous=NORMAL; PRAGMA cache_size=-32768; PRAGMA mmap_size=268435456;",
    )?;
    db.execute_batch(SCHEMA)?;
    let present: Vec<String> = {
        let mut info = db.prepare("PRAGMA table_info(outcomes)")?;
        let names = info.query_map([], |row| row.get::<_, String>(1))?;
        names.collect::<rusqlite::Result<_>>()?
    };
    for (name, kind) in ADDED_COLUMNS {
        if !present.iter().any(|p| p == name) {
            db.execute_batch(&format!("ALTER TABLE outcomes ADD COLUMN {name} {kind}"))?;
        }
    }
    Ok(db)
}

/// Appends `rows` in one transaction; all or none are written.
pub fn append(
    db: &mut Connection,
    rows: &[LogRow],
    price_per_1k: &dyn Fn(&str) -> f64,
) -> rusqlite::Result<usize> {
    let insert = format!(
        "INSERT INTO outcomes ({}) VALUES ({})",
        COLUMNS.join(", "),
        vec!["?"; COLUMNS.len()].join(", ")
    );
    let transaction = db.transaction()?;
    {
        let mut statement = Insert::prepare(&transaction, &insert)?;
        let mut scratch = Scratch::default();
        for row in rows {
            row.insert(&mut statement, &mut scratch, price_per_1k)?;
        }
    }
    transaction.commit()?;
    Ok(rows.len())
}

/// Deletes rows older than `cutoff_ms`; the number deleted.
pub fn prune(db: &Connection, cutoff_ms: i64) -> rusqlite::Result<usize> {
    db.execute("DELETE FROM outcomes WHERE ts_ms < ?1", [cutoff_ms])
}

/// Moves a broken file (and its WAL) aside so a fresh one can start; the
/// name it was moved to.
pub fn move_aside(path: &Path, stamp_ms: i64) -> std::io::Result<PathBuf> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".corrupt-{stamp_ms}"));
    let aside = PathBuf::from(aside);
    std::fs::rename(path, &aside)?;
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(side));
    }
    Ok(aside)
}
