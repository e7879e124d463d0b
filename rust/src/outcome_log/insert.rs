//! The outcome log's insert, through SQLite's C API: values are bound
//! without a copy (`SQLITE_STATIC`: the row's buffers outlive the step that
//! reads them), where rusqlite binds every text and blob as
//! `SQLITE_TRANSIENT`, a malloc, a copy and a free per column per row (a
//! sixth of the writer's instructions with eight text columns).
//!
//! The unsafe code is this file's alone: a statement prepared on a borrowed
//! connection, bound, stepped, reset and unbound in one call, finalised on
//! drop.

use std::ffi::{c_int, CStr, CString};
use std::marker::PhantomData;
use std::ptr;

use rusqlite::{ffi, Connection};

/// One parameter's value, borrowed for the step.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Null,
    Integer(i64),
    Real(f64),
    /// UTF-8 text (from a `&str`, or the JSON writers, which copy only
    /// `&str` bytes and ASCII): SQLite does not check it.
    Text(&'a [u8]),
    Blob(&'a [u8]),
}

/// A prepared statement that is run once per call with borrowed values.
pub struct Insert<'c> {
    db: *mut ffi::sqlite3,
    statement: *mut ffi::sqlite3_stmt,
    parameters: usize,
    _connection: PhantomData<&'c Connection>,
}

fn failure(db: *mut ffi::sqlite3, code: c_int) -> rusqlite::Error {
    // SAFETY: `db` is an open connection's handle; sqlite3_errmsg returns a
    // NUL-terminated string owned by SQLite, copied out at once.
    let message = unsafe {
        let text = ffi::sqlite3_errmsg(db);
        (!text.is_null()).then(|| CStr::from_ptr(text).to_string_lossy().into_owned())
    };
    rusqlite::Error::SqliteFailure(ffi::Error::new(code), message)
}

impl<'c> Insert<'c> {
    /// Prepares `sql` on `connection`, which it borrows until dropped.
    pub fn prepare(connection: &'c Connection, sql: &str) -> rusqlite::Result<Self> {
        let text = CString::new(sql).map_err(|_| rusqlite::Error::InvalidQuery)?;
        // SAFETY: the handle is valid while `connection` is borrowed, which
        // the returned statement's lifetime ensures.
        let db = unsafe { connection.handle() };
        let mut statement = ptr::null_mut();
        // SAFETY: `text` is NUL-terminated (-1: read up to the NUL); on
        // success `statement` is a new statement this struct finalises.
        let code = unsafe {
            ffi::sqlite3_prepare_v2(db, text.as_ptr(), -1, &mut statement, ptr::null_mut())
        };
        if code != ffi::SQLITE_OK {
            return Err(failure(db, code));
        }
        if statement.is_null() {
            // SQL of only whitespace or comments compiles to no statement.
            return Err(rusqlite::Error::InvalidQuery);
        }
        // SAFETY: `statement` is the valid statement just prepared.
        let parameters = unsafe { ffi::sqlite3_bind_parameter_count(statement) };
        Ok(Self {
            db,
            statement,
            parameters: usize::try_from(parameters).unwrap_or(0),
            _connection: PhantomData,
        })
    }

    /// Binds `values` to parameters 1..=n, runs the statement to its end
    /// and unbinds them: no pointer into `values` stays behind.
    pub fn run(&mut self, values: &[Value<'_>]) -> rusqlite::Result<()> {
        if values.len() != self.parameters {
            return Err(rusqlite::Error::InvalidParameterCount(
                values.len(),
                self.parameters,
            ));
        }
        let result = self.bind(values).and_then(|()| self.step());
        // SAFETY: a valid statement; reset ends the step and clear_bindings
        // sets every parameter back to NULL, dropping the borrowed pointers.
        unsafe {
            ffi::sqlite3_reset(self.statement);
            ffi::sqlite3_clear_bindings(self.statement);
        }
        result
    }

    fn bind(&mut self, values: &[Value<'_>]) -> rusqlite::Result<()> {
        for (index, value) in values.iter().enumerate() {
            // At most `parameters` (a c_int) values, checked by `run`.
            let column = (index + 1) as c_int;
            // SAFETY: a valid statement, an index in 1..=parameters; texts
            // and blobs are bound SQLITE_STATIC, valid until `run` unbinds
            // them (their borrow outlives the call); the length is the
            // slice's, so a text needs no NUL.
            let code = unsafe {
                match *value {
                    Value::Null => ffi::sqlite3_bind_null(self.statement, column),
                    Value::Integer(v) => ffi::sqlite3_bind_int64(self.statement, column, v),
                    Value::Real(v) => ffi::sqlite3_bind_double(self.statement, column, v),
                    Value::Text(v) => {
                        debug_assert!(std::str::from_utf8(v).is_ok());
                        ffi::sqlite3_bind_text64(
                            self.statement,
                            column,
                            v.as_ptr().cast(),
                            v.len() as ffi::sqlite3_uint64,
                            ffi::SQLITE_STATIC(),
                            ffi::SQLITE_UTF8 as u8,
                        )
                    }
                    Value::Blob(v) => ffi::sqlite3_bind_blob64(
                        self.statement,
                        column,
                        v.as_ptr().cast(),
                        v.len() as ffi::sqlite3_uint64,
                        ffi::SQLITE_STATIC(),
                    ),
                }
            };
            if code != ffi::SQLITE_OK {
                return Err(failure(self.db, code));
            }
        }
        Ok(())
    }

    fn step(&mut self) -> rusqlite::Result<()> {
        // SAFETY: a valid statement with every parameter bound.
        match unsafe { ffi::sqlite3_step(self.statement) } {
            ffi::SQLITE_DONE => Ok(()),
            // An INSERT returns no rows; one that did is not this statement.
            ffi::SQLITE_ROW => Err(rusqlite::Error::ExecuteReturnedResults),
            code => Err(failure(self.db, code)),
        }
    }
}

impl Drop for Insert<'_> {
    fn drop(&mut self) {
        // SAFETY: the statement was prepared by `prepare` and is finalised
        // once, here, while the connection is still borrowed.
        unsafe {
            ffi::sqlite3_finalize(self.statement);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Connection {
        let db = Connection::open_in_memory().unwrap();
        db.execute_batch("CREATE TABLE t (i INTEGER, r REAL, s TEXT, b BLOB, n TEXT)")
            .unwrap();
        db
    }

    /// A row of the test table: (i, r, s, b, n).
    type Row = (i64, f64, String, Vec<u8>, Option<String>);

    #[test]
    fn values_arrive_as_bound_and_the_buffers_may_change_after_the_run() {
        let db = table();
        {
            let mut insert = Insert::prepare(&db, "INSERT INTO t VALUES (?, ?, ?, ?, ?)").unwrap();
            let mut text = String::from("héllo \"quoted\"");
            let mut blob = vec![0u8, 1, 255];
            for round in 0..3 {
                insert
                    .run(&[
                        Value::Integer(round),
                        Value::Real(0.5 + round as f64),
                        Value::Text(text.as_bytes()),
                        Value::Blob(&blob),
                        Value::Null,
                    ])
                    .unwrap();
                // The statement keeps no pointer into them once run returns.
                text.push('!');
                blob.push(7);
            }
        }
        let rows: Vec<Row> = db
            .prepare("SELECT i, r, s, b, n FROM t ORDER BY i")
            .unwrap()
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[2].0, 2);
        assert_eq!(rows[2].1, 2.5);
        assert_eq!(rows[2].2, "héllo \"quoted\"!!");
        assert_eq!(rows[2].3, vec![0, 1, 255, 7, 7]);
        assert_eq!(rows[2].4, None);
        assert_eq!(rows[0].2, "héllo \"quoted\"");
    }

    #[test]
    fn a_constraint_failure_is_an_error_and_the_statement_stays_usable() {
        let db = Connection::open_in_memory().unwrap();
        db.execute_batch("CREATE TABLE t (s TEXT NOT NULL)")
            .unwrap();
        let mut insert = Insert::prepare(&db, "INSERT INTO t VALUES (?)").unwrap();
        let error = insert.run(&[Value::Null]).unwrap_err();
        assert_eq!(
            error.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ConstraintViolation)
        );
        assert!(error.to_string().contains("NOT NULL"), "{error}");
        insert.run(&[Value::Text(b"after")]).unwrap();
        drop(insert);
        let count: i64 = db
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 1);
    }

    #[test]
    fn the_wrong_number_of_values_and_bad_sql_are_errors() {
        let db = table();
        let mut insert = Insert::prepare(&db, "INSERT INTO t (i) VALUES (?)").unwrap();
        assert!(matches!(
            insert.run(&[]),
            Err(rusqlite::Error::InvalidParameterCount(0, 1))
        ));
        assert!(Insert::prepare(&db, "INSERT INTO nowhere VALUES (?)").is_err());
        assert!(Insert::prepare(&db, "  -- nothing").is_err());
        assert!(Insert::prepare(&db, "INSERT\0").is_err());
    }
}
