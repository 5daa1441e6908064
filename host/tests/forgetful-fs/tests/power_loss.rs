//! Real mounts in temporary directories: what survives `drop_unsynced` and
//! what does not, for plain files and for SQLite killed mid-flight.

use std::fs::Permissions;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use forgetful_fs::ForgetfulFs;
use rusqlite::Connection;
use tempfile::TempDir;

/// A mount over a fresh backing directory. Fields drop in order: the mount
/// goes before its directories.
struct Mounted {
    fs: ForgetfulFs,
    dir: TempDir,
}

impl Mounted {
    /// A fresh mount, or `None` (having said why) where FUSE cannot be used.
    fn new() -> Option<Self> {
        if let Err(why) = forgetful_fs::available() {
            println!("SKIPPED: {why}");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("backing")).unwrap();
        fs::create_dir(dir.path().join("mnt")).unwrap();
        let fs = ForgetfulFs::mount(&dir.path().join("backing"), &dir.path().join("mnt")).unwrap();
        Some(Self { fs, dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.fs.mountpoint().join(name)
    }

    fn backing(&self, name: &str) -> PathBuf {
        self.dir.path().join("backing").join(name)
    }
}

#[test]
fn synced_data_survives_a_drop_and_unsynced_data_does_not() {
    let Some(m) = Mounted::new() else { return };
    let path = m.path("a");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    file.write_all(b"hello world").unwrap();
    file.sync_all().unwrap();
    assert_eq!(m.fs.unsynced_bytes(), 0);

    file.write_all_at(b"WORLD", 6).unwrap();
    file.write_all_at(b" and more", 11).unwrap();
    // Far past the end, so the file is sparse and larger than 4 GiB.
    let far = 5 << 30;
    file.write_all_at(b"far", far).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), far + 3);
    let mut head = [0; 20];
    file.read_exact_at(&mut head, 0).unwrap();
    assert_eq!(&head, b"hello WORLD and more");
    let mut tail = [0; 6];
    file.read_exact_at(&mut tail, far - 3).unwrap();
    assert_eq!(&tail, b"\0\0\0far");
    assert_eq!(m.fs.unsynced_bytes(), 5 + 9 + 3);
    // The backing file has seen none of it.
    assert_eq!(fs::read(m.backing("a")).unwrap(), b"hello world");

    m.fs.drop_unsynced();
    assert_eq!(m.fs.unsynced_bytes(), 0);
    assert_eq!(fs::metadata(&path).unwrap().len(), 11);
    assert_eq!(fs::read(&path).unwrap(), b"hello world");
    // A descriptor open across the drop reads what survived too.
    let mut head = [0; 11];
    file.read_exact_at(&mut head, 0).unwrap();
    assert_eq!(&head, b"hello world");

    // fdatasync makes data durable as fsync does, far offsets included.
    file.write_all_at(b"far", far).unwrap();
    file.sync_data().unwrap();
    m.fs.drop_unsynced();
    assert_eq!(fs::metadata(&path).unwrap().len(), far + 3);
    file.read_exact_at(&mut tail, far - 3).unwrap();
    assert_eq!(&tail, b"\0\0\0far");
}

#[test]
fn a_file_extended_without_fsync_shrinks_back() {
    let Some(m) = Mounted::new() else { return };
    let path = m.path("grow");
    fs::write(&path, vec![1; 10_000]).unwrap();
    File::open(&path).unwrap().sync_all().unwrap();
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(&[2; 100_000]).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), 110_000);
    m.fs.drop_unsynced();
    assert_eq!(fs::read(&path).unwrap(), vec![1; 10_000]);
}

#[test]
fn truncation_is_kept_and_trims_unsynced_data() {
    let Some(m) = Mounted::new() else { return };
    let path = m.path("t");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    file.write_all_at(&[7; 100], 0).unwrap();
    file.sync_all().unwrap();
    file.write_all_at(&[8; 100], 100).unwrap();
    // Cut into the unsynced part, then grow again: the cut bytes read as zeros.
    file.set_len(150).unwrap();
    file.set_len(200).unwrap();
    let mut expected = vec![7; 100];
    expected.extend([8; 50]);
    expected.extend([0; 50]);
    assert_eq!(fs::read(&path).unwrap(), expected);
    assert_eq!(m.fs.unsynced_bytes(), 50);
    // Truncation is metadata: it reached the backing file at once.
    m.fs.drop_unsynced();
    let mut expected = vec![7; 100];
    expected.extend([0; 100]);
    assert_eq!(fs::read(&path).unwrap(), expected);
    file.set_len(10).unwrap();
    m.fs.drop_unsynced();
    assert_eq!(fs::read(&path).unwrap(), vec![7; 10]);
}

#[test]
fn o_sync_writes_and_metadata_need_no_fsync() {
    let Some(m) = Mounted::new() else { return };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_SYNC)
        .open(m.path("log"))
        .unwrap();
    file.write_all(b"durable at once").unwrap();
    assert_eq!(m.fs.unsynced_bytes(), 0);

    fs::write(m.path("meta"), b"data").unwrap();
    fs::set_permissions(m.path("meta"), Permissions::from_mode(0o600)).unwrap();
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    File::open(m.path("meta"))
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    m.fs.drop_unsynced();

    assert_eq!(fs::read(m.path("log")).unwrap(), b"durable at once");
    for path in [m.path("meta"), m.backing("meta")] {
        let md = fs::metadata(&path).unwrap();
        assert_eq!(md.permissions().mode() & 0o777, 0o600);
        assert_eq!(md.modified().unwrap(), mtime);
        assert_eq!(md.len(), 0, "the data was never synced");
    }
}

#[test]
fn rename_and_unlink_carry_or_drop_the_cache() {
    let Some(m) = Mounted::new() else { return };
    fs::create_dir(m.path("dir")).unwrap();

    // The careful way: write a temporary file, fsync it, rename it over.
    let tmp = m.path("dir/state.tmp");
    let mut file = File::create(&tmp).unwrap();
    file.write_all(b"version 1").unwrap();
    file.sync_all().unwrap();
    drop(file);
    fs::rename(&tmp, m.path("dir/state")).unwrap();
    m.fs.drop_unsynced();
    assert_eq!(fs::read(m.path("dir/state")).unwrap(), b"version 1");
    assert!(!tmp.exists());

    // Unsynced data follows the file through a rename, and is then lost:
    // the rename is kept, so the file is there but empty.
    fs::write(&tmp, b"version 2").unwrap();
    fs::rename(&tmp, m.path("dir/state")).unwrap();
    assert_eq!(fs::read(m.path("dir/state")).unwrap(), b"version 2");
    m.fs.drop_unsynced();
    assert_eq!(fs::read(m.path("dir/state")).unwrap(), b"");

    // A directory renamed with an unsynced file in it.
    fs::write(m.path("dir/inner"), b"moved").unwrap();
    fs::rename(m.path("dir"), m.path("moved")).unwrap();
    assert_eq!(fs::read(m.path("moved/inner")).unwrap(), b"moved");
    let mut names: Vec<_> = fs::read_dir(m.path("moved"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["inner", "state"]);

    // An unlinked file's cache goes with it and cannot show through a new
    // file, even one that reuses the backing inode number.
    fs::write(m.path("moved/wal"), vec![9; 5000]).unwrap();
    fs::remove_file(m.path("moved/wal")).unwrap();
    fs::write(m.path("moved/wal"), b"new").unwrap();
    assert_eq!(fs::read(m.path("moved/wal")).unwrap(), b"new");

    // Still readable and writable while open after an unlink.
    let mut open = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(m.path("moved/gone"))
        .unwrap();
    fs::remove_file(m.path("moved/gone")).unwrap();
    open.write_all(b"nameless").unwrap();
    let mut back = [0; 8];
    open.read_exact_at(&mut back, 0).unwrap();
    assert_eq!(&back, b"nameless");
    drop(open);

    // What is left unsynced: "moved" (5) and "new" (3), nothing unlinked
    // once the kernel has sent the release of `gone`, which it does after
    // close(2) returns.
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.fs.unsynced_bytes() != 5 + 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(m.fs.unsynced_bytes(), 5 + 3);
    fs::remove_file(m.path("moved/inner")).unwrap();
    fs::remove_file(m.path("moved/wal")).unwrap();
    fs::remove_file(m.path("moved/state")).unwrap();
    fs::remove_dir(m.path("moved")).unwrap();
    assert_eq!(m.fs.unsynced_bytes(), 0);
    assert!(fs::read_dir(m.fs.mountpoint()).unwrap().next().is_none());
}

/// Set for the child process of `sqlite_survives_a_kill_and_a_power_cut`:
/// the database it writes to.
const CHILD_DB: &str = "FORGETFUL_FS_CHILD_DB";
/// Printed by the child once its writes are committed.
const READY: &str = "forgetful-fs child: committed";

/// Opens a database as Verge's Durable Objects do.
fn open_db(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
        .unwrap();
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |row| row.get(0)).unwrap()
}

/// The writer that gets killed: run by the test below in a child process,
/// since a power cut must take the writer with it (a connection that lived
/// on would go on from state the cut erased).
#[test]
#[ignore = "the child process of sqlite_survives_a_kill_and_a_power_cut"]
fn sqlite_writer_child() {
    let Some(path) = std::env::var_os(CHILD_DB) else {
        println!("SKIPPED: run only as a child of sqlite_survives_a_kill_and_a_power_cut");
        return;
    };
    let conn = open_db(Path::new(&path));
    conn.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)",
        [],
    )
    .unwrap();
    for id in 0..100 {
        conn.execute(
            "INSERT INTO t VALUES (?1, ?2)",
            (id, format!("synced {id}")),
        )
        .unwrap();
    }
    conn.pragma_update(None, "synchronous", "OFF").unwrap();
    for id in 100..200 {
        conn.execute(
            "INSERT INTO t VALUES (?1, ?2)",
            (id, format!("unsynced {id}")),
        )
        .unwrap();
    }
    println!("{READY}");
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::park();
    }
}

#[test]
fn sqlite_survives_a_kill_and_a_power_cut() {
    let Some(m) = Mounted::new() else { return };
    let db = m.path("objects.sqlite");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "sqlite_writer_child", "--ignored", "--nocapture"])
        .env(CHILD_DB, &db)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut said = Vec::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        if line == READY {
            break;
        }
        said.push(line);
    }
    // Commits with synchronous=OFF were never fsynced.
    let unsynced = m.fs.unsynced_bytes();
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        status.code().is_none(),
        "the child ended by itself: {said:?}"
    );
    assert!(unsynced > 0, "nothing was left unsynced");
    m.fs.drop_unsynced();

    let conn = open_db(&db);
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    assert_eq!(count(&conn, "SELECT count(*) FROM t WHERE id < 100"), 100);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM t WHERE id < 100 AND v = 'synced ' || id"
        ),
        100
    );
    let later = count(&conn, "SELECT count(*) FROM t WHERE id >= 100");
    assert!(
        later < 100,
        "all {later} unsynced rows survived the power cut"
    );
    println!("{unsynced} bytes forgotten; {later} of 100 unsynced rows survived");

    // The recovered database takes new writes, and a clean close (which
    // checkpoints the WAL into the database) loses none of them.
    conn.execute("INSERT INTO t VALUES (1000, 'after')", [])
        .unwrap();
    drop(conn);
    m.fs.drop_unsynced();
    let conn = open_db(&db);
    assert_eq!(count(&conn, "SELECT count(*) FROM t WHERE id = 1000"), 1);
    assert_eq!(count(&conn, "SELECT count(*) FROM t WHERE id < 100"), 100);
}

#[test]
fn sqlite_wal_with_shared_memory_works() {
    // Verge's control store uses WAL without exclusive locking, so SQLite
    // maps a `-shm` file shared: the mount must allow that.
    let Some(m) = Mounted::new() else { return };
    let db = m.path("control.sqlite");
    for round in 0..3 {
        let conn = Connection::open(&db).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "FULL").unwrap();
        conn.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER)", [])
            .unwrap();
        conn.execute("INSERT INTO t VALUES (?1)", [round]).unwrap();
        let reader = Connection::open(&db).unwrap();
        assert_eq!(count(&reader, "SELECT count(*) FROM t"), round + 1);
        assert!(m.path("control.sqlite-shm").exists());
        drop(reader);
        drop(conn);
        m.fs.drop_unsynced();
    }
}

#[test]
fn dropping_the_mount_while_a_file_is_open_detaches_it() {
    let Some(m) = Mounted::new() else { return };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(m.path("open"))
        .unwrap();
    file.write_all(b"still served").unwrap();
    let Mounted { fs, dir } = m;
    let mountpoint = fs.mountpoint().to_path_buf();
    drop(fs);
    // The mountpoint is an empty directory again, while the open file
    // is still served until it is closed.
    assert!(fs::read_dir(&mountpoint).unwrap().next().is_none());
    let mut back = [0; 12];
    file.read_exact_at(&mut back, 0).unwrap();
    assert_eq!(&back, b"still served");
    drop(file);
    drop(dir);
}
