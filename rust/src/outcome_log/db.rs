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
const ADDED_COLUMNS: [(&str, &str); 8] = [
    ("learned", "INTEGER"),
    ("category", "TEXT"),
    ("features", "BLOB"),
    ("request_id", "TEXT"),
    ("source", "TEXT"),
    ("verdict", "INTEGER"),
    ("confidence", "REAL"),
    ("detail", "TEXT"),
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

/// Rows one INSERT statement takes: a statement's start, halt and reset
/// cost as much as a row's values, so they are shared by 32 rows (736
/// parameters, far below SQLite's 32,766).
const ROWS_PER_INSERT: usize = 32;

fn insert_sql(rows: usize) -> String {
    let one = format!("({})", vec!["?"; COLUMNS.len()].join(", "));
    format!(
        "INSERT INTO outcomes ({}) VALUES {}",
        COLUMNS.join(", "),
        vec![one; rows].join(", ")
    )
}

/// Appends `rows` in one transaction; all or none are written.
pub fn append(
    db: &mut Connection,
    rows: &[LogRow],
    price_per_1k: &dyn Fn(&str) -> f64,
) -> rusqlite::Result<usize> {
    let transaction = db.transaction()?;
    {
        let mut full: Option<Insert<'_>> = None;
        let mut scratch: Vec<Scratch> = (0..ROWS_PER_INSERT.min(rows.len()))
            .map(|_| Scratch::default())
            .collect();
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            // A chunk's values borrow its rows' scratch: one Vec per chunk.
            let mut values = Vec::with_capacity(chunk.len() * COLUMNS.len());
            for (row, scratch) in chunk.iter().zip(scratch.iter_mut()) {
                values.extend(row.values(scratch, price_per_1k));
            }
            if chunk.len() == ROWS_PER_INSERT {
                if full.is_none() {
                    full = Some(Insert::prepare(&transaction, &insert_sql(ROWS_PER_INSERT))?);
                }
                if let Some(insert) = full.as_mut() {
                    insert.run(&values)?;
                }
            } else {
                // The batch's last, shorter chunk: a statement of its size.
                Insert::prepare(&transaction, &insert_sql(chunk.len()))?.run(&values)?;
            }
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
