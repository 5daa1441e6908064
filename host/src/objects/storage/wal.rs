//! Page-level replication of one Durable Object's SQLite database, for
//! cluster mode.
//!
//! After each commit the owner reads the pages that commit changed straight
//! from the database's `-wal` file ([`WalReader`]) and ships them as one
//! [`PageSet`] (see [`PageSet::encode`]) to PostgreSQL. A new owner rebuilds
//! the file from the last snapshot plus the page sets after it ([`apply`]),
//! as Litestream and LiteFS do. The WAL already holds, for every commit, the
//! full image of each page it changed, so SQLite itself needs no hooks.
//!
//! The WAL (<https://www.sqlite.org/fileformat2.html#walformat>) is a 32-byte
//! header, then frames: a 24-byte frame header and one page. Each frame
//! carries the header's salts and a checksum chained over the header and
//! every frame before it; the last frame of a transaction records the
//! database's size in pages. After a crash SQLite keeps a frame only if its
//! salts and chained checksum are right and a commit frame follows it; this
//! reader trusts exactly those frames, so what it ships is what SQLite would
//! recover.
//!
//! The writing connection runs with `locking_mode=EXCLUSIVE` and
//! `wal_autocheckpoint=0`: only the owner checkpoints. Within one generation
//! of the WAL (one pair of salts) frames up to the last commit are never
//! rewritten, which is what lets the reader resume where it stopped instead
//! of rescanning the file. A checkpoint that lets the WAL restart changes
//! the salts; the owner says so with [`WalReader::reset`], and any other
//! restart is reported as [`WalError::Restarted`].

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const WAL_HEADER_BYTES: usize = 32;
const FRAME_HEADER_BYTES: usize = 24;
/// The low bit of the magic number says the checksum's words are big-endian.
const WAL_MAGIC: u32 = 0x377f_0682;
const WAL_VERSION: u32 = 3_007_000;

/// The only layout [`PageSet::encode`] writes; a different leading byte is
/// how a later layout (compressed, say) will tell itself apart.
const FORMAT_V1: u8 = 1;
/// Format byte, page size, database size, page count.
const ENCODED_HEADER_BYTES: usize = 1 + 4 + 4 + 4;
/// Two 32-bit checksum words after everything else.
const ENCODED_TRAILER_BYTES: usize = 8;

/// Why reading, decoding or applying page sets failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WalError {
    #[error("WAL replication I/O failed: {0}")]
    Io(#[from] io::Error),
    #[error("corrupt: {0}")]
    Corrupt(String),
    /// The WAL's salts changed, or it vanished, without [`WalReader::reset`]:
    /// someone checkpointed and the WAL started over, so commits may have
    /// gone from it unread. The caller must ship a full snapshot.
    #[error("the WAL restarted behind the reader's back; a full snapshot must be shipped")]
    Restarted,
}

fn corrupt(message: impl Into<String>) -> WalError {
    WalError::Corrupt(message.into())
}

/// The pages one or more commits changed, newest version of each page, and
/// the database's size after them.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PageSet {
    pub(crate) page_size: u32,
    pub(crate) db_pages: u32,
    /// Sorted by page number, unique, each `page_size` bytes, none past
    /// `db_pages`.
    pub(crate) pages: Vec<(u32, Vec<u8>)>,
}

impl std::fmt::Debug for PageSet {
    /// Page numbers only: a set's pages can run to gigabytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let numbers: Vec<u32> = self.pages.iter().map(|(number, _)| *number).collect();
        f.debug_struct("PageSet")
            .field("page_size", &self.page_size)
            .field("db_pages", &self.db_pages)
            .field("pages", &numbers)
            .finish()
    }
}

impl PageSet {
    /// The set as one compact, versioned blob for a Postgres `bytea`:
    /// format byte, then page size, database size and page count (u32 LE),
    /// then each page number (u32 LE) and its page, then a checksum of all
    /// that (two u32 LE).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let entry_bytes = 4 + self.page_size as usize;
        let mut out = Vec::with_capacity(
            ENCODED_HEADER_BYTES + self.pages.len() * entry_bytes + ENCODED_TRAILER_BYTES,
        );
        out.push(FORMAT_V1);
        out.extend_from_slice(&self.page_size.to_le_bytes());
        out.extend_from_slice(&self.db_pages.to_le_bytes());
        // Page numbers are unique u32s, so the count fits.
        out.extend_from_slice(&(self.pages.len() as u32).to_le_bytes());
        for (number, data) in &self.pages {
            out.extend_from_slice(&number.to_le_bytes());
            out.extend_from_slice(data);
        }
        let (a, b) = checksum(false, &out, (0, 0));
        out.extend_from_slice(&a.to_le_bytes());
        out.extend_from_slice(&b.to_le_bytes());
        out
    }

    /// The set [`encode`](Self::encode) made, or `Corrupt` saying what is
    /// wrong with `bytes`.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, WalError> {
        let Some(&format) = bytes.first() else {
            return Err(corrupt("page set is empty"));
        };
        if format != FORMAT_V1 {
            return Err(corrupt(format!("page set has unknown format {format}")));
        }
        if bytes.len() < ENCODED_HEADER_BYTES + ENCODED_TRAILER_BYTES {
            return Err(corrupt(format!(
                "page set is truncated: {} bytes, shorter than its header",
                bytes.len()
            )));
        }
        let (body, trailer) = bytes.split_at(bytes.len() - ENCODED_TRAILER_BYTES);
        let page_size = le_u32(&body[1..5]);
        let db_pages = le_u32(&body[5..9]);
        let count = le_u32(&body[9..13]);
        if !valid_page_size(page_size) {
            return Err(corrupt(format!("page set has page size {page_size}")));
        }
        let entry_bytes = 4 + page_size as usize;
        let expected = (count as usize)
            .checked_mul(entry_bytes)
            .and_then(|n| n.checked_add(ENCODED_HEADER_BYTES + ENCODED_TRAILER_BYTES));
        if expected != Some(bytes.len()) {
            return Err(corrupt(format!(
                "page set is truncated or garbled: {} bytes, where {count} pages of {page_size} bytes take {}",
                bytes.len(),
                expected.map_or_else(|| "more than can exist".to_owned(), |n| n.to_string()),
            )));
        }
        if checksum(false, body, (0, 0)) != (le_u32(&trailer[..4]), le_u32(&trailer[4..])) {
            return Err(corrupt("page set fails its checksum"));
        }
        let set = PageSet {
            page_size,
            db_pages,
            pages: body[ENCODED_HEADER_BYTES..]
                .chunks_exact(entry_bytes)
                .map(|entry| (le_u32(&entry[..4]), entry[4..].to_vec()))
                .collect(),
        };
        set.check()?;
        Ok(set)
    }

    /// Folds `later` (the commits right after this set's) into this set, as
    /// if both had been read as one: its pages win, its size is the
    /// database's, and pages it cut off the end are dropped. For compacting
    /// a run of page sets into one.
    pub(crate) fn merge(&mut self, later: PageSet) {
        if later.page_size != self.page_size {
            // One database in WAL mode never changes its page size; should
            // two sets disagree anyway, a mix of both would be garbage.
            *self = later;
            return;
        }
        let earlier = std::mem::take(&mut self.pages);
        let mut merged = Vec::with_capacity(earlier.len() + later.pages.len());
        let mut earlier = earlier
            .into_iter()
            .filter(|(number, _)| *number <= later.db_pages)
            .peekable();
        for (number, data) in later.pages {
            while let Some(page) = earlier.next_if(|(n, _)| *n < number) {
                merged.push(page);
            }
            earlier.next_if(|(n, _)| *n == number);
            merged.push((number, data));
        }
        merged.extend(earlier);
        self.pages = merged;
        self.db_pages = later.db_pages;
    }

    /// The invariants `apply` relies on, so that a set built by hand (or
    /// decoded from a blob whose checksum collided) cannot write outside
    /// its database.
    fn check(&self) -> Result<(), WalError> {
        if !valid_page_size(self.page_size) {
            return Err(corrupt(format!(
                "page set has page size {}",
                self.page_size
            )));
        }
        let mut previous = 0;
        for (number, data) in &self.pages {
            if *number <= previous || *number > self.db_pages {
                return Err(corrupt(format!(
                    "page set has page {number} after page {previous}, in a database of {} pages",
                    self.db_pages
                )));
            }
            if data.len() != self.page_size as usize {
                return Err(corrupt(format!(
                    "page set's page {number} is {} bytes, not {}",
                    data.len(),
                    self.page_size
                )));
            }
            previous = *number;
        }
        Ok(())
    }
}

/// Reads the frames of committed transactions from a database's `-wal`
/// file, from where it last stopped.
pub(crate) struct WalReader {
    wal_path: PathBuf,
    /// Where the last read stopped, in the WAL generation it read; `None`
    /// until a commit has been read.
    resume: Option<Position>,
    /// Set by `reset`: a WAL with other salts (or none) is the owner's own
    /// checkpoint, not someone else's.
    restart_expected: bool,
}

/// A point just after a commit frame, and what it takes to go on from it.
#[derive(Debug, Clone, Copy)]
struct Position {
    salts: [u8; 8],
    big_endian_checksum: bool,
    page_size: u32,
    frames: u64,
    checksum: (u32, u32),
}

impl Position {
    fn offset(&self) -> u64 {
        WAL_HEADER_BYTES as u64
            + self.frames * (FRAME_HEADER_BYTES as u64 + u64::from(self.page_size))
    }
}

impl WalReader {
    /// For the database at `db_path` (the WAL is `<db_path>-wal`). The
    /// caller has just run `PRAGMA wal_checkpoint(TRUNCATE)`, so the WAL is
    /// empty or absent.
    pub(crate) fn new(db_path: &Path) -> Self {
        let mut wal_path = db_path.as_os_str().to_owned();
        wal_path.push("-wal");
        WalReader {
            wal_path: PathBuf::from(wal_path),
            resume: None,
            restart_expected: false,
        }
    }

    /// Every page written by transactions committed since the last call
    /// (merged, newest wins), or `None` when nothing was committed. Reads
    /// only up to the last valid commit frame: frames of a transaction that
    /// is still open, or was rolled back after spilling, are ignored, as
    /// SQLite's recovery ignores them. `Restarted` if the WAL started over
    /// without `reset`; the reader stays where it was, for the caller to
    /// checkpoint, ship a snapshot and `reset`.
    pub(crate) fn read_committed(&mut self) -> Result<Option<PageSet>, WalError> {
        let file = match File::open(&self.wal_path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return self.no_wal(),
            Err(e) => return Err(e.into()),
        };
        let wal_bytes = file.metadata()?.len();
        let mut wal = BufReader::with_capacity(1 << 16, file);
        let mut header = [0; WAL_HEADER_BYTES];
        if !read_full(&mut wal, &mut header)? {
            return self.no_wal();
        }
        let Some(start) = parse_wal_header(&header)? else {
            return self.no_wal();
        };
        let start = match self.resume {
            Some(resume) if resume.salts == start.salts => {
                if wal_bytes < resume.offset() {
                    // Same salts yet shorter: not a restart SQLite makes,
                    // but the frames read before are gone all the same.
                    return Err(WalError::Restarted);
                }
                wal.seek(SeekFrom::Start(resume.offset()))?;
                resume
            }
            Some(_) if !self.restart_expected => return Err(WalError::Restarted),
            _ => start,
        };

        let mut frame = vec![0; FRAME_HEADER_BYTES + start.page_size as usize];
        let mut running = start;
        let mut committed_at = None;
        let mut committed: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        let mut db_pages = 0;
        // Pages of the transaction whose commit frame has not been seen yet.
        let mut open: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        while read_full(&mut wal, &mut frame)? {
            let (header, page) = frame.split_at(FRAME_HEADER_BYTES);
            let number = be_u32(&header[0..4]);
            let commit_size = be_u32(&header[4..8]);
            if number == 0 || header[8..16] != running.salts {
                break;
            }
            let sum = checksum(running.big_endian_checksum, &header[..8], running.checksum);
            let sum = checksum(running.big_endian_checksum, page, sum);
            if sum != (be_u32(&header[16..20]), be_u32(&header[20..24])) {
                break;
            }
            running.checksum = sum;
            running.frames += 1;
            open.insert(number, page.to_vec());
            if commit_size != 0 {
                // A commit that shrank the database (VACUUM) leaves frames
                // of pages past its end; SQLite's checkpoint skips them.
                drop_past(&mut committed, commit_size);
                drop_past(&mut open, commit_size);
                committed.append(&mut open);
                db_pages = commit_size;
                committed_at = Some(running);
            }
        }

        let Some(position) = committed_at else {
            return Ok(None);
        };
        self.resume = Some(position);
        self.restart_expected = false;
        Ok(Some(PageSet {
            page_size: position.page_size,
            db_pages,
            pages: committed.into_iter().collect(),
        }))
    }

    /// After the caller checkpointed with TRUNCATE (or RESTART): the WAL
    /// starts over. Everything committed before the checkpoint must have
    /// been read already (or be in a snapshot the caller ships), since the
    /// checkpoint may erase it from the WAL. After `Restarted`, checkpoint
    /// with TRUNCATE: after RESTART the frames left in the WAL would be
    /// shipped again (harmless, as they hold what the snapshot holds, but
    /// wasted).
    pub(crate) fn reset(&mut self) {
        // The old position is kept: after RESTART the WAL keeps its salts
        // and frames until the next write, and rereading them would ship
        // them twice. Nor can the salts the WAL has now be taken as done
        // with: a WAL that held no commit restarts under the same salts.
        self.restart_expected = true;
    }

    /// What an absent, short or invalid WAL means: nothing committed since
    /// the owner's checkpoint, or, if the reader had been following a WAL
    /// and was not told, someone else's.
    fn no_wal(&self) -> Result<Option<PageSet>, WalError> {
        if self.resume.is_some() && !self.restart_expected {
            Err(WalError::Restarted)
        } else {
            Ok(None)
        }
    }
}

/// The start of the WAL described by `header`, or `None` where SQLite
/// would treat the WAL as empty.
fn parse_wal_header(header: &[u8; WAL_HEADER_BYTES]) -> Result<Option<Position>, WalError> {
    let magic = be_u32(&header[0..4]);
    let page_size = be_u32(&header[8..12]);
    if magic & !1 != WAL_MAGIC || !valid_page_size(page_size) {
        return Ok(None);
    }
    let big_endian_checksum = magic & 1 == 1;
    let sum = checksum(big_endian_checksum, &header[..24], (0, 0));
    if sum != (be_u32(&header[24..28]), be_u32(&header[28..32])) {
        return Ok(None);
    }
    // Checked after the checksum, in SQLite's order: it refuses to open a
    // database whose intact WAL has another version.
    let version = be_u32(&header[4..8]);
    if version != WAL_VERSION {
        return Err(corrupt(format!("WAL has unknown version {version}")));
    }
    let mut salts = [0; 8];
    salts.copy_from_slice(&header[16..24]);
    Ok(Some(Position {
        salts,
        big_endian_checksum,
        page_size,
        frames: 0,
        checksum: sum,
    }))
}

/// Writes `set`'s pages into the database file at `db_path` (not open in WAL
/// mode by anyone), and truncates or extends it to `db_pages * page_size`;
/// fsyncs. A set that holds page 1 may start a new file, so a full snapshot
/// can be shipped as the page set of every page. Not atomic: a crash midway
/// leaves a mix, so rebuild into a scratch file and rename it into place.
pub(crate) fn apply(db_path: &Path, set: &PageSet) -> Result<(), WalError> {
    set.check()?;
    let has_header = set.pages.first().is_some_and(|(number, _)| *number == 1);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(has_header)
        .truncate(false)
        .open(db_path)?;
    if !has_header && set.db_pages > 0 {
        // Page 1 holds the page size; without it the file's own must match,
        // or every page would land at the wrong offset.
        match database_page_size(&mut file)? {
            Some(size) if size == set.page_size => {}
            Some(size) => {
                return Err(corrupt(format!(
                    "page set of {}-byte pages for a database of {size}-byte pages",
                    set.page_size
                )));
            }
            None => {
                return Err(corrupt(
                    "database file is empty, and the page set has no page 1 to start it",
                ));
            }
        }
    }
    let page_size = u64::from(set.page_size);
    for (number, data) in &set.pages {
        file.seek(SeekFrom::Start(u64::from(number - 1) * page_size))?;
        file.write_all(data)?;
    }
    file.set_len(u64::from(set.db_pages) * page_size)?;
    file.sync_all()?;
    Ok(())
}

/// The page size in a database file's header, or `None` for an empty file.
fn database_page_size(file: &mut File) -> Result<Option<u32>, WalError> {
    let mut header = [0; 100];
    file.seek(SeekFrom::Start(0))?;
    if !read_full(file, &mut header)? {
        return if file.metadata()?.len() == 0 {
            Ok(None)
        } else {
            Err(corrupt("database file is shorter than its header"))
        };
    }
    if &header[..16] != b"SQLite format 3\0" {
        return Err(corrupt("database file is not a SQLite database"));
    }
    // 65536 does not fit the field's two bytes and is stored as 1.
    Ok(Some(match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65536,
        size => u32::from(size),
    }))
}

fn drop_past(pages: &mut BTreeMap<u32, Vec<u8>>, db_pages: u32) {
    if let Some(first_past) = db_pages.checked_add(1) {
        pages.split_off(&first_past);
    }
}

fn valid_page_size(size: u32) -> bool {
    size.is_power_of_two() && (512..=65536).contains(&size)
}

/// SQLite's WAL checksum: two running sums over pairs of 32-bit words.
/// A last partial pair (only in encoded page sets) is padded with zeros.
fn checksum(big_endian: bool, bytes: &[u8], (mut s0, mut s1): (u32, u32)) -> (u32, u32) {
    let word = if big_endian {
        u32::from_be_bytes
    } else {
        u32::from_le_bytes
    };
    // A plain indexed loop: iterator adapters cost tenfold in the
    // unoptimized builds the tests run in, and this touches every byte.
    let whole = bytes.len() - bytes.len() % 8;
    let mut i = 0;
    while i < whole {
        let b = bytes;
        s0 = s0
            .wrapping_add(word([b[i], b[i + 1], b[i + 2], b[i + 3]]))
            .wrapping_add(s1);
        s1 = s1
            .wrapping_add(word([b[i + 4], b[i + 5], b[i + 6], b[i + 7]]))
            .wrapping_add(s0);
        i += 8;
    }
    if whole < bytes.len() {
        let mut last = [0; 8];
        last[..bytes.len() - whole].copy_from_slice(&bytes[whole..]);
        return checksum(big_endian, &last, (s0, s1));
    }
    (s0, s1)
}

/// Fills `buf`, or returns false if the reader ends first.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    match reader.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

#[cfg(test)]
mod tests {
    use std::fs;

    use rusqlite::types::Value;
    use rusqlite::{Connection, OpenFlags, params};

    use super::*;

    /// splitmix64: deterministic, so a failing seed can be replayed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }

        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    /// The source connection as the owner opens it; a tiny cache so that
    /// big transactions spill frames into the WAL before they commit.
    fn open_source(path: &Path, page_size: u32) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(&format!(
            "PRAGMA page_size={page_size}; PRAGMA locking_mode=EXCLUSIVE; \
             PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
             PRAGMA wal_autocheckpoint=0; PRAGMA cache_size=16;"
        ))
        .unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        conn
    }

    fn checkpoint(conn: &Connection, mode: &str) {
        let busy: i64 = conn
            .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| r.get(0))
            .unwrap();
        assert_eq!(busy, 0, "checkpoint({mode}) was blocked");
    }

    /// The schema and every row of every table, in a fixed order.
    fn dump(conn: &Connection) -> Vec<Vec<Value>> {
        let schema: Vec<(String, String, Option<String>)> = conn
            .prepare("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut out = Vec::new();
        for (kind, name, sql) in schema {
            out.push(vec![
                Value::Text(kind.clone()),
                Value::Text(name.clone()),
                sql.map_or(Value::Null, Value::Text),
            ]);
            if kind != "table" {
                continue;
            }
            let mut rows = conn
                .prepare(&format!("SELECT * FROM \"{name}\" ORDER BY rowid"))
                .unwrap();
            let columns = rows.column_count();
            let rows = rows
                .query_map([], |r| (0..columns).map(|i| r.get(i)).collect())
                .unwrap();
            for row in rows {
                out.push(row.unwrap());
            }
        }
        out
    }

    fn open_read_only(path: &Path) -> Connection {
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
    }

    fn integrity(conn: &Connection) -> String {
        conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap()
    }

    fn assert_same(expected: &[Vec<Value>], replica: &Path, what: &str) {
        let conn = open_read_only(replica);
        assert_eq!(integrity(&conn), "ok", "{what}");
        let got = dump(&conn);
        if let Some(i) = (0..expected.len().max(got.len())).find(|&i| expected.get(i) != got.get(i))
        {
            let row = |row: Option<&Vec<Value>>| format!("{:?}", row.map(|r| &r[..r.len().min(2)]));
            panic!(
                "{what}: {} rows expected, {} found; first difference at {i}: {} vs {}",
                expected.len(),
                got.len(),
                row(expected.get(i)),
                row(got.get(i))
            );
        }
    }

    fn round_trip(set: &PageSet) {
        assert_eq!(&PageSet::decode(&set.encode()).unwrap(), set);
    }

    fn tables(conn: &Connection) -> Vec<String> {
        conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn blob(rng: &mut Rng, page_size: u32) -> Vec<u8> {
        let len = match rng.below(20) {
            // Long enough for overflow pages at any page size.
            0 => rng.below(2 * u64::from(page_size)).min(150_000),
            1..=5 => rng.below(1500),
            _ => rng.below(120),
        };
        rng.bytes(len as usize)
    }

    fn random_statement(conn: &Connection, rng: &mut Rng, page_size: u32) {
        let tables = tables(conn);
        let table = &tables[rng.below(tables.len() as u64) as usize];
        let max_id: i64 = conn
            .query_row(
                &format!("SELECT coalesce(max(id), 0) FROM {table}"),
                [],
                |r| r.get(0),
            )
            .unwrap();
        let some_id = rng.below(max_id as u64 + 1) as i64;
        match rng.below(100) {
            0..=34 => {
                for _ in 0..=rng.below(4) {
                    conn.execute(
                        &format!("INSERT INTO {table}(k, v) VALUES (?, ?)"),
                        params![rng.below(1000) as i64, blob(rng, page_size)],
                    )
                    .unwrap();
                }
            }
            35..=39 => {
                // Enough pages to overflow the 16-page cache and spill.
                let mut insert = conn
                    .prepare(&format!("INSERT INTO {table}(k, v) VALUES (?, ?)"))
                    .unwrap();
                for _ in 0..64 {
                    let len = rng.below(u64::from(page_size) / 2) as usize;
                    insert
                        .execute(params![rng.below(1000) as i64, rng.bytes(len)])
                        .unwrap();
                }
            }
            40..=59 => {
                conn.execute(
                    &format!(
                        "UPDATE {table} SET k = ?, v = ? \
                         WHERE id = (SELECT id FROM {table} WHERE id >= ? LIMIT 1)"
                    ),
                    params![rng.below(1000) as i64, blob(rng, page_size), some_id],
                )
                .unwrap();
            }
            60..=64 => {
                conn.execute(
                    &format!("UPDATE {table} SET k = k + 1 WHERE id % ? = 0"),
                    [rng.below(5) as i64 + 1],
                )
                .unwrap();
            }
            65..=79 => {
                conn.execute(
                    &format!("DELETE FROM {table} WHERE id BETWEEN ? AND ?"),
                    params![some_id, some_id + rng.below(10) as i64],
                )
                .unwrap();
            }
            80..=83 => {
                // Frees most pages, so that the next VACUUM shrinks the file.
                conn.execute(&format!("DELETE FROM {table} WHERE id % 4 != 0"), [])
                    .unwrap();
            }
            84..=89 => {
                conn.execute_batch(&format!(
                    "CREATE TABLE IF NOT EXISTS t{}(id INTEGER PRIMARY KEY, k INTEGER, v BLOB)",
                    rng.below(8)
                ))
                .unwrap();
            }
            90..=93 if table != "t0" => {
                conn.execute_batch(&format!("DROP TABLE {table}")).unwrap();
            }
            90..=96 => {
                conn.execute_batch(&format!(
                    "CREATE INDEX IF NOT EXISTS {table}_k ON {table}(k, v)"
                ))
                .unwrap();
            }
            _ => {
                conn.execute_batch(&format!("DROP INDEX IF EXISTS {table}_k"))
                    .unwrap();
            }
        }
    }

    fn wal_len(db_path: &Path) -> u64 {
        let mut wal = db_path.as_os_str().to_owned();
        wal.push("-wal");
        fs::metadata(PathBuf::from(wal)).map_or(0, |m| m.len())
    }

    #[derive(Debug, Default)]
    struct Seen {
        commits: u32,
        empty_commits: u32,
        rollbacks: u32,
        rollbacks_after_spill: u32,
        savepoint_rollbacks: u32,
        shrinks: u32,
        truncates: u32,
        restart_checkpoints: u32,
        restarted_errors: u32,
        max_set_pages: usize,
    }

    /// Replays a random workload on a source database and rebuilds two
    /// replicas from what the reader ships: one applies every set as it
    /// comes, the other merges runs of sets first. Both must match the
    /// source exactly and pass `integrity_check`.
    fn replicate(page_size: u32, seed: u64, steps: u32) {
        let dir = tempfile::tempdir().unwrap();
        let source_path = dir.path().join("source.db");
        let each = dir.path().join("each.db");
        let merged = dir.path().join("merged.db");
        let source = open_source(&source_path, page_size);
        source
            .execute_batch("CREATE TABLE t0(id INTEGER PRIMARY KEY, k INTEGER, v BLOB)")
            .unwrap();
        let snapshot = |source: &Connection| {
            checkpoint(source, "TRUNCATE");
            fs::copy(&source_path, &each).unwrap();
            fs::copy(&source_path, &merged).unwrap();
        };
        snapshot(&source);
        let mut reader = WalReader::new(&source_path);
        let mut rng = Rng(seed);
        let mut unmerged: Option<PageSet> = None;
        let mut seen = Seen::default();
        let mut db_pages: u32 = source
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .unwrap();
        let mut unannounced_checkpoint = false;

        for step in 0..steps {
            let committed = match rng.below(100) {
                0..=3 => {
                    source.execute_batch("VACUUM").unwrap();
                    true
                }
                4..=6 => {
                    checkpoint(&source, "TRUNCATE");
                    reader.reset();
                    unannounced_checkpoint = false;
                    seen.truncates += 1;
                    false
                }
                7..=8 => {
                    checkpoint(&source, "RESTART");
                    reader.reset();
                    unannounced_checkpoint = false;
                    seen.restart_checkpoints += 1;
                    false
                }
                9..=10 => {
                    // Not announced with reset: the next write restarts the
                    // WAL and the reader must notice.
                    checkpoint(&source, "PASSIVE");
                    unannounced_checkpoint = true;
                    false
                }
                11..=24 => {
                    random_statement(&source, &mut rng, page_size);
                    true
                }
                _ => {
                    let before = wal_len(&source_path);
                    source.execute_batch("BEGIN").unwrap();
                    for _ in 0..=rng.below(4) {
                        random_statement(&source, &mut rng, page_size);
                    }
                    if rng.chance(40) {
                        source.execute_batch("SAVEPOINT a").unwrap();
                        for _ in 0..=rng.below(3) {
                            random_statement(&source, &mut rng, page_size);
                        }
                        if rng.chance(50) {
                            source.execute_batch("ROLLBACK TO a").unwrap();
                            seen.savepoint_rollbacks += 1;
                        }
                        random_statement(&source, &mut rng, page_size);
                        source.execute_batch("RELEASE a").unwrap();
                    }
                    let spilled = wal_len(&source_path) > before;
                    if spilled && !unannounced_checkpoint {
                        // Frames of an open transaction are not committed.
                        assert_eq!(reader.read_committed().unwrap(), None);
                    }
                    if rng.chance(25) {
                        source.execute_batch("ROLLBACK").unwrap();
                        seen.rollbacks += 1;
                        seen.rollbacks_after_spill += u32::from(spilled);
                        false
                    } else {
                        source.execute_batch("COMMIT").unwrap();
                        true
                    }
                }
            };

            match reader.read_committed() {
                Err(WalError::Restarted) => {
                    assert!(unannounced_checkpoint, "step {step}: spurious Restarted");
                    seen.restarted_errors += 1;
                    unannounced_checkpoint = false;
                    snapshot(&source);
                    reader.reset();
                    unmerged = None;
                }
                Err(e) => panic!("step {step}: {e}"),
                Ok(None) => seen.empty_commits += u32::from(committed),
                Ok(Some(set)) => {
                    assert!(committed, "step {step}: pages read without a commit");
                    seen.commits += 1;
                    seen.max_set_pages = seen.max_set_pages.max(set.pages.len());
                    assert_eq!(set.page_size, page_size);
                    let now: u32 = source
                        .query_row("PRAGMA page_count", [], |r| r.get(0))
                        .unwrap();
                    assert_eq!(set.db_pages, now, "step {step}");
                    seen.shrinks += u32::from(now < db_pages);
                    db_pages = now;
                    round_trip(&set);
                    let set = PageSet::decode(&set.encode()).unwrap();
                    apply(&each, &set).unwrap();
                    match &mut unmerged {
                        Some(run) => run.merge(set),
                        None => unmerged = Some(set),
                    }
                }
            }

            if (rng.chance(30) || step + 1 == steps)
                && let Some(run) = unmerged.take()
            {
                round_trip(&run);
                apply(&merged, &run).unwrap();
            }
            if step % 10 == 9 || step + 1 == steps {
                let expected = dump(&source);
                assert_same(&expected, &each, &format!("step {step}, set by set"));
                if unmerged.is_none() {
                    assert_same(&expected, &merged, &format!("step {step}, merged"));
                }
            }
        }
        assert_eq!(integrity(&source), "ok");
        eprintln!(
            "page size {page_size}: {seen:?} {} bytes",
            fs::metadata(&each).unwrap().len()
        );
        assert!(
            seen.commits > 0
                && seen.rollbacks_after_spill > 0
                && seen.savepoint_rollbacks > 0
                && seen.shrinks > 0
                && seen.truncates > 0
                && seen.restart_checkpoints > 0
                && seen.restarted_errors > 0,
            "the workload missed a case: {seen:?}"
        );

        // The new owner opens the rebuilt file as its own and goes on.
        drop(source);
        let owner = open_source(&each, page_size);
        owner
            .execute("INSERT INTO t0(k, v) VALUES (1, x'00')", [])
            .unwrap();
        assert_eq!(integrity(&owner), "ok");
    }

    #[test]
    fn replicates_random_workload_4096() {
        replicate(4096, 1, 400);
    }

    #[test]
    fn replicates_random_workload_1024() {
        replicate(1024, 2, 400);
    }

    #[test]
    fn replicates_random_workload_65536() {
        replicate(65536, 5, 150);
    }

    fn page(number: u32, fill: u8) -> (u32, Vec<u8>) {
        (number, vec![fill; 512])
    }

    #[test]
    fn decode_rejects_truncated_garbled_and_invalid_input() {
        let set = PageSet {
            page_size: 512,
            db_pages: 5,
            pages: vec![page(1, 1), page(3, 3), page(5, 0)],
        };
        let bytes = set.encode();
        assert_eq!(PageSet::decode(&bytes).unwrap(), set);

        let is_corrupt = |bytes: &[u8]| matches!(PageSet::decode(bytes), Err(WalError::Corrupt(_)));
        for len in 0..bytes.len() {
            assert!(is_corrupt(&bytes[..len]), "prefix of {len} bytes accepted");
        }
        assert!(is_corrupt(&[bytes.as_slice(), &[0]].concat()));
        for i in 0..bytes.len() {
            for bit in [0x01, 0x80] {
                let mut garbled = bytes.clone();
                garbled[i] ^= bit;
                assert!(is_corrupt(&garbled), "flip of {bit:#x} at {i} accepted");
            }
        }
        let mut later = bytes.clone();
        later[0] = 2;
        let message = PageSet::decode(&later).unwrap_err().to_string();
        assert!(message.contains("unknown format 2"), "{message}");

        let mut rng = Rng(7);
        for _ in 0..2000 {
            let len = rng.below(1200) as usize;
            let mut garbage = rng.bytes(len);
            if let Some(first) = garbage.first_mut() {
                *first = FORMAT_V1;
            }
            assert!(is_corrupt(&garbage));
        }

        // Well-formed blobs of sets that break the invariants `apply` needs.
        let invalid = [
            (512, 5, vec![page(3, 0), page(1, 0)]),
            (512, 5, vec![page(1, 0), page(1, 0)]),
            (512, 5, vec![page(0, 0)]),
            (512, 5, vec![page(6, 0)]),
            (1000, 5, vec![(1, vec![0; 1000])]),
            (512, 5, vec![(1, vec![0; 511])]),
        ];
        for (page_size, db_pages, pages) in invalid {
            let set = PageSet {
                page_size,
                db_pages,
                pages,
            };
            assert!(
                is_corrupt(&set.encode()),
                "{:?}",
                (set.page_size, set.db_pages)
            );
            assert!(matches!(
                apply(Path::new("/nonexistent/never-written"), &set),
                Err(WalError::Corrupt(_))
            ));
        }
    }

    #[test]
    fn merge_keeps_newest_pages_and_drops_cut_off_ones() {
        let mut run = PageSet {
            page_size: 512,
            db_pages: 10,
            pages: vec![page(1, 1), page(4, 1), page(9, 1), page(10, 1)],
        };
        run.merge(PageSet {
            page_size: 512,
            db_pages: 6,
            pages: vec![page(2, 2), page(4, 2)],
        });
        run.merge(PageSet {
            page_size: 512,
            db_pages: 12,
            pages: vec![page(11, 3)],
        });
        let expected = PageSet {
            page_size: 512,
            db_pages: 12,
            pages: vec![page(1, 1), page(2, 2), page(4, 2), page(11, 3)],
        };
        assert_eq!(run, expected);
    }

    #[test]
    fn apply_checks_the_file_it_writes_into() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let source = open_source(&path, 4096);
        source.execute_batch("CREATE TABLE t(x)").unwrap();
        source.execute("INSERT INTO t VALUES (42)", []).unwrap();
        checkpoint(&source, "TRUNCATE");
        drop(source);

        let set = PageSet {
            page_size: 1024,
            db_pages: 3,
            pages: vec![(3, vec![0; 1024])],
        };
        let message = apply(&path, &set).unwrap_err().to_string();
        assert!(message.contains("4096-byte pages"), "{message}");
        let missing = dir.path().join("missing");
        assert!(matches!(apply(&missing, &set), Err(WalError::Io(_))));
        fs::write(&missing, b"").unwrap();
        assert!(matches!(apply(&missing, &set), Err(WalError::Corrupt(_))));

        // A snapshot shipped as a page set of every page starts a new file.
        let file = fs::read(&path).unwrap();
        let snapshot = PageSet {
            page_size: 4096,
            db_pages: (file.len() / 4096) as u32,
            pages: (1..).zip(file.chunks(4096).map(<[u8]>::to_vec)).collect(),
        };
        let copy = dir.path().join("copy");
        apply(&copy, &PageSet::decode(&snapshot.encode()).unwrap()).unwrap();
        let x: i64 = open_read_only(&copy)
            .query_row("SELECT x FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(x, 42);
    }

    #[test]
    fn ignores_frames_after_the_last_commit() {
        let dir = tempfile::tempdir().unwrap();
        let source_path = dir.path().join("source.db");
        let replica = dir.path().join("replica.db");
        let source = open_source(&source_path, 4096);
        source
            .execute_batch("CREATE TABLE t0(id INTEGER PRIMARY KEY, k INTEGER, v BLOB)")
            .unwrap();
        checkpoint(&source, "TRUNCATE");
        fs::copy(&source_path, &replica).unwrap();
        let mut reader = WalReader::new(&source_path);
        let mut rng = Rng(11);
        for i in 0..20 {
            source
                .execute(
                    "INSERT INTO t0(k, v) VALUES (?, ?)",
                    params![i, rng.bytes(3000)],
                )
                .unwrap();
        }
        let committed = dump(&source);
        let committed_wal = wal_len(&source_path);

        // A transaction that outgrows the cache spills into the WAL while
        // open; a crash now must recover the state before it.
        source.execute_batch("BEGIN").unwrap();
        for i in 0..200 {
            source
                .execute(
                    "INSERT INTO t0(k, v) VALUES (?, ?)",
                    params![i, rng.bytes(3000)],
                )
                .unwrap();
        }
        source.execute("DELETE FROM t0 WHERE id < 5", []).unwrap();
        assert!(wal_len(&source_path) > committed_wal + 100 * 4096);
        let crash = dir.path().join("crash.db");
        fs::copy(&source_path, &crash).unwrap();
        fs::copy(
            dir.path().join("source.db-wal"),
            dir.path().join("crash.db-wal"),
        )
        .unwrap();

        let set = WalReader::new(&crash).read_committed().unwrap().unwrap();
        assert_eq!(set, reader.read_committed().unwrap().unwrap());
        assert!(set.pages.len() < 40, "{} pages", set.pages.len());
        apply(&replica, &set).unwrap();
        assert_same(&committed, &replica, "before the open transaction");
        assert_eq!(reader.read_committed().unwrap(), None);

        // Rolled back, its frames stay in the file; the next commit
        // overwrites only some of them and must not drag in the rest.
        source.execute_batch("ROLLBACK").unwrap();
        assert_eq!(reader.read_committed().unwrap(), None);
        source
            .execute("UPDATE t0 SET k = -1 WHERE id = 7", [])
            .unwrap();
        let set = reader.read_committed().unwrap().unwrap();
        assert_eq!(set.pages.len(), 1);
        apply(&replica, &set).unwrap();
        assert_same(&dump(&source), &replica, "after the rollback");
    }

    /// A WAL that holds no commit keeps its salts when it restarts, so new
    /// salts cannot be what tells a new generation.
    #[test]
    fn follows_a_wal_restarted_under_the_same_salts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let replica = dir.path().join("replica");
        let source = open_source(&path, 1024);
        source
            .execute_batch("CREATE TABLE t0(id INTEGER PRIMARY KEY, k INTEGER, v BLOB)")
            .unwrap();
        checkpoint(&source, "TRUNCATE");
        fs::copy(&path, &replica).unwrap();
        let mut reader = WalReader::new(&path);
        let mut rng = Rng(3);
        let mut insert = |rows: usize| {
            for _ in 0..rows {
                source
                    .execute("INSERT INTO t0(k, v) VALUES (1, ?)", [rng.bytes(900)])
                    .unwrap();
            }
        };
        insert(1);
        apply(&replica, &reader.read_committed().unwrap().unwrap()).unwrap();
        checkpoint(&source, "TRUNCATE");
        reader.reset();
        source.execute_batch("BEGIN").unwrap();
        insert(100);
        source.execute_batch("ROLLBACK").unwrap();
        let salts = fs::read(dir.path().join("db-wal")).unwrap()[16..24].to_vec();
        assert_eq!(reader.read_committed().unwrap(), None);
        checkpoint(&source, "RESTART");
        reader.reset();
        insert(1);
        assert_eq!(fs::read(dir.path().join("db-wal")).unwrap()[16..24], salts);
        apply(&replica, &reader.read_committed().unwrap().unwrap()).unwrap();
        assert_same(&dump(&source), &replica, "after the restart");
    }

    /// Rewrites a WAL with big-endian checksums, as a big-endian machine
    /// would have written it.
    fn big_endian_wal(wal: &[u8]) -> Vec<u8> {
        let mut out = wal.to_vec();
        out[3] |= 1;
        let sum = checksum(true, &out[..24], (0, 0));
        out[24..28].copy_from_slice(&sum.0.to_be_bytes());
        out[28..32].copy_from_slice(&sum.1.to_be_bytes());
        let page_size = be_u32(&wal[8..12]) as usize;
        let mut running = sum;
        for frame in out[WAL_HEADER_BYTES..].chunks_exact_mut(FRAME_HEADER_BYTES + page_size) {
            running = checksum(true, &frame[..8], running);
            running = checksum(true, &frame[FRAME_HEADER_BYTES..], running);
            frame[16..20].copy_from_slice(&running.0.to_be_bytes());
            frame[20..24].copy_from_slice(&running.1.to_be_bytes());
        }
        out
    }

    /// Damages a WAL at random (flipped bits, torn ends, both checksum byte
    /// orders) and checks that the reader recovers exactly what SQLite does
    /// from the same files.
    #[test]
    fn reads_what_sqlite_recovers_from_a_damaged_wal() {
        let dir = tempfile::tempdir().unwrap();
        let source_path = dir.path().join("source.db");
        let source = open_source(&source_path, 1024);
        source
            .execute_batch("CREATE TABLE t0(id INTEGER PRIMARY KEY, k INTEGER, v BLOB)")
            .unwrap();
        checkpoint(&source, "TRUNCATE");
        let snapshot = fs::read(&source_path).unwrap();
        let mut rng = Rng(5);
        for _ in 0..12 {
            source.execute_batch("BEGIN").unwrap();
            for _ in 0..=rng.below(3) {
                random_statement(&source, &mut rng, 1024);
            }
            source.execute_batch("COMMIT").unwrap();
        }
        source.execute_batch("BEGIN").unwrap();
        for _ in 0..3 {
            random_statement(&source, &mut rng, 1024);
        }
        let wal = fs::read(dir.path().join("source.db-wal")).unwrap();
        let frame_bytes = (FRAME_HEADER_BYTES + 1024) as u64;
        let mut recovered_commits = std::collections::BTreeSet::new();

        for case in 0..150 {
            let mut damaged = if case % 2 == 0 {
                wal.clone()
            } else {
                big_endian_wal(&wal)
            };
            match case / 2 % 3 {
                0 => damaged.truncate(rng.below(damaged.len() as u64 + 1) as usize),
                1 => {
                    // Mostly frame headers, where salts and sizes live.
                    let frame = rng.below(damaged.len() as u64 / frame_bytes);
                    let at = if rng.chance(50) {
                        WAL_HEADER_BYTES as u64 + frame * frame_bytes + rng.below(24)
                    } else {
                        rng.below(damaged.len() as u64)
                    };
                    damaged[at as usize] ^= 1 << rng.below(8);
                }
                _ => {}
            }
            let case_dir = tempfile::tempdir().unwrap();
            let db = case_dir.path().join("db");
            let replica = case_dir.path().join("replica");
            fs::write(&db, &snapshot).unwrap();
            fs::write(case_dir.path().join("db-wal"), &damaged).unwrap();
            fs::write(&replica, &snapshot).unwrap();
            let set = WalReader::new(&db).read_committed().unwrap();
            if let Some(set) = &set {
                apply(&replica, set).unwrap();
            }

            let recovered = Connection::open(&db).unwrap();
            let page_count: u32 = recovered
                .query_row("PRAGMA page_count", [], |r| r.get(0))
                .unwrap();
            if let Some(set) = &set {
                assert_eq!(set.db_pages, page_count, "case {case}");
            }
            let expected = dump(&recovered);
            recovered_commits.insert(expected.len());
            assert_same(&expected, &replica, &format!("case {case}"));
        }
        // The damage landed in enough different places to recover many
        // different states.
        assert!(recovered_commits.len() > 5, "{recovered_commits:?}");
    }

    #[test]
    fn notices_checkpoints_it_was_not_told_of() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let source = open_source(&path, 4096);
        source.execute_batch("CREATE TABLE t(x)").unwrap();
        checkpoint(&source, "TRUNCATE");
        let mut reader = WalReader::new(&path);
        assert_eq!(reader.read_committed().unwrap(), None);
        let insert = || source.execute("INSERT INTO t VALUES (1)", []).unwrap();

        insert();
        assert!(reader.read_committed().unwrap().is_some());
        // Nothing was lost here, but an emptied WAL cannot tell.
        checkpoint(&source, "TRUNCATE");
        assert!(matches!(reader.read_committed(), Err(WalError::Restarted)));
        reader.reset();
        assert_eq!(reader.read_committed().unwrap(), None);
        insert();
        assert!(reader.read_committed().unwrap().is_some());

        // A complete checkpoint lets the next write restart the WAL.
        checkpoint(&source, "PASSIVE");
        assert_eq!(reader.read_committed().unwrap(), None);
        insert();
        assert!(matches!(reader.read_committed(), Err(WalError::Restarted)));
        checkpoint(&source, "TRUNCATE");
        reader.reset();
        insert();
        assert_eq!(reader.read_committed().unwrap().unwrap().pages.len(), 1);

        // Told of it, the reader follows the WAL into its new generation,
        // without shipping again what the old one held.
        checkpoint(&source, "RESTART");
        reader.reset();
        assert_eq!(reader.read_committed().unwrap(), None);
        insert();
        assert_eq!(reader.read_committed().unwrap().unwrap().pages.len(), 1);

        // A reset with no checkpoint before it loses nothing.
        checkpoint(&source, "TRUNCATE");
        reader.reset();
        insert();
        assert!(reader.read_committed().unwrap().is_some());
        reader.reset();
        insert();
        source.execute("UPDATE t SET x = 2", []).unwrap();
        let set = reader.read_committed().unwrap().unwrap();
        let replica = dir.path().join("replica");
        fs::copy(&path, &replica).unwrap();
        apply(&replica, &set).unwrap();
        let rows: i64 = open_read_only(&replica)
            .query_row("SELECT count(*) FROM t WHERE x = 2", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 7);
    }
}
