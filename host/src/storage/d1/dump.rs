//! `verge d1 export`: the database as SQL text, like `wrangler d1 export`
//! — the schema, then the rows as `INSERT`s, then indexes, triggers and
//! views, so that running the dump on an empty database (`verge d1 import`
//! or `execute --file`) rebuilds it.

use std::fmt::Write;

use rusqlite::Connection;
use rusqlite::types::Value;

use super::D1Database;
use crate::objects::storage::SqlError;

/// What a dump holds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DumpOptions {
    pub(crate) schema: bool,
    pub(crate) data: bool,
}

impl D1Database {
    /// The dump, read in one transaction so that it is consistent.
    pub(crate) fn dump(&self, options: DumpOptions, limit_bytes: u64) -> Result<String, SqlError> {
        self.write(limit_bytes, |writer| {
            writer.internal(|conn| dump(conn, options))
        })
    }
}

/// One schema object worth dumping.
struct Object {
    kind: String,
    name: String,
    sql: String,
}

fn dump(conn: &Connection, options: DumpOptions) -> rusqlite::Result<String> {
    // Shadow tables (an FTS5 table's storage) are rebuilt by their virtual
    // table; SQLite's own and Verge's internal tables are never dumped.
    let shadows: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_list WHERE type = 'shadow'")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let objects: Vec<Object> = conn
        .prepare(
            "SELECT type, name, sql FROM sqlite_schema
             WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
               AND name NOT LIKE '\\_verge\\_%' ESCAPE '\\' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\'
             ORDER BY rowid",
        )?
        .query_map([], |r| {
            Ok(Object {
                kind: r.get(0)?,
                name: r.get(1)?,
                sql: r.get(2)?,
            })
        })?
        .filter(|o| o.as_ref().map_or(true, |o| !shadows.contains(&o.name)))
        .collect::<rusqlite::Result<_>>()?;

    // Foreign keys are checked at the end of the import's transaction, so
    // rows may come in any order.
    let mut out = String::from("PRAGMA defer_foreign_keys = ON;\n");
    for table in objects.iter().filter(|o| o.kind == "table") {
        if options.schema {
            writeln!(out, "{};", table.sql).expect("writing to a String");
        }
        if options.data {
            dump_rows(conn, &table.name, &mut out)?;
        }
    }
    if options.schema {
        for object in objects.iter().filter(|o| o.kind != "table") {
            writeln!(out, "{};", object.sql).expect("writing to a String");
        }
    }
    Ok(out)
}

/// Appends an `INSERT` per row of `table`, naming the stored columns (not
/// generated ones, which SQLite computes again).
fn dump_rows(conn: &Connection, table: &str, out: &mut String) -> rusqlite::Result<()> {
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_xinfo(?1) WHERE hidden = 0 ORDER BY cid")?
        .query_map([table], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if columns.is_empty() {
        return Ok(());
    }
    let list = columns
        .iter()
        .map(|c| identifier(c))
        .collect::<Vec<_>>()
        .join(", ");
    let mut select = conn.prepare(&format!("SELECT {list} FROM {}", identifier(table)))?;
    let mut rows = select.query([])?;
    while let Some(row) = rows.next()? {
        let values = (0..columns.len())
            .map(|i| row.get::<_, Value>(i).map(|v| literal(&v)))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        writeln!(
            out,
            "INSERT INTO {} ({list}) VALUES ({});",
            identifier(table),
            values.join(", ")
        )
        .expect("writing to a String");
    }
    Ok(())
}

/// A name as a quoted SQL identifier.
fn identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A value as a SQL literal that reads back as the same value and type.
fn literal(value: &Value) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::Integer(i) => i.to_string(),
        // `{:?}` keeps a fraction or exponent (`1.0`, `1e300`), so the
        // value reads back as a REAL; SQLite has no literal for NaN.
        Value::Real(r) if r.is_nan() => "NULL".into(),
        Value::Real(r) if r.is_infinite() => (if *r > 0.0 { "9e999" } else { "-9e999" }).into(),
        Value::Real(r) => format!("{r:?}"),
        Value::Text(t) => format!("'{}'", t.replace('\'', "''")),
        Value::Blob(b) => {
            let mut hex = String::with_capacity(3 + b.len() * 2);
            hex.push_str("X'");
            for byte in b {
                write!(hex, "{byte:02x}").expect("writing to a String");
            }
            hex.push('\'');
            hex
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_read_back_as_the_same_values() {
        let conn = Connection::open_in_memory().unwrap();
        for value in [
            Value::Null,
            Value::Integer(i64::MIN),
            Value::Real(1.0),
            Value::Real(0.1),
            Value::Real(1e300),
            Value::Real(f64::INFINITY),
            Value::Text("it's \"quoted\"".into()),
            Value::Blob(vec![0, 1, 254, 255]),
        ] {
            let back: Value = conn
                .query_row(&format!("SELECT {}", literal(&value)), [], |r| r.get(0))
                .unwrap();
            assert_eq!(back, value);
        }
    }
}
