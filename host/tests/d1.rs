//! D1 databases through a real host: the notes example's CRUD over HTTP,
//! meta, atomic batches, the guest-SQL rules and budgets, limits, sharing
//! between workers, restart persistence, and `verge d1` end to end.

mod support;

use std::path::Path;
use std::process::Command;

use reqwest::Method;
use serde_json::{Value, json};
use support::{TOKEN, TestHost, VergeProcess, guest};

/// A host with the probe deployed.
async fn probe_host() -> TestHost {
    let host = TestHost::start().await;
    assert_eq!(host.deploy(&guest("d1-probe")).await.status(), 201);
    host
}

/// POSTs `body` (JSON, or text for `exec`) to the probe at `path`
/// (`/query`, `/other/query?binding=SHARED`...).
async fn probe(host: &TestHost, path: &str, body: Value) -> (u16, Value) {
    let request = host.client.post(format!("{}{path}", host.url));
    let request = match body {
        Value::String(text) => request.body(text),
        other => request.json(&other),
    };
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn query(host: &TestHost, sql: &str, params: Value) -> (u16, Value) {
    probe(host, "/query", json!({ "sql": sql, "params": params })).await
}

/// Runs a statement that must fail with the error `kind`; its message.
async fn refused(host: &TestHost, sql: &str, params: Value, kind: &str) -> String {
    let (status, body) = query(host, sql, params).await;
    assert_eq!(status, 400, "{sql}: {body}");
    assert_eq!(body["error"], kind, "{sql}: {body}");
    body["message"].as_str().unwrap().to_owned()
}

/// Runs a statement that must succeed; its answer.
async fn ok(host: &TestHost, sql: &str, params: Value) -> Value {
    let (status, body) = query(host, sql, params).await;
    assert_eq!(status, 200, "{sql}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_example_creates_reads_updates_and_deletes_over_http() {
    let host = TestHost::start().await;
    let notes = guest("d1-notes");
    assert_eq!(host.deploy(&notes).await.status(), 201);
    // The schema, from the example's migrations, through the admin API.
    for file in ["0001_create_notes.sql", "0002_add_tags.sql"] {
        let sql = std::fs::read_to_string(notes.dir.join("migrations").join(file)).unwrap();
        let applied = host
            .admin(
                Method::POST,
                &format!("/v1/d1/notes/migrations?table=d1_migrations&name={file}"),
            )
            .body(sql)
            .send()
            .await
            .unwrap();
        assert_eq!(applied.status(), 200, "{}", applied.text().await.unwrap());
    }

    let url = |path: &str| format!("{}{path}", host.url);
    let created = host
        .client
        .post(url("/notes"))
        .json(&json!({ "title": "Groceries", "body": "tea", "tags": ["home", "Errands"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let note: Value = created.json().await.unwrap();
    let id = note["id"].as_i64().unwrap();
    assert_eq!(note["tags"], json!(["errands", "home"]));
    host.client
        .post(url("/notes"))
        .json(&json!({ "title": "Read", "tags": ["books"] }))
        .send()
        .await
        .unwrap();

    let listed = host.get_json("/notes").await;
    assert_eq!(listed["notes"].as_array().unwrap().len(), 2);
    let tagged = host.get_json("/notes?tag=home").await;
    assert_eq!(tagged["notes"][0]["title"], "Groceries");
    assert_eq!(tagged["notes"].as_array().unwrap().len(), 1);

    let updated = host
        .client
        .put(url(&format!("/notes/{id}")))
        .json(&json!({ "body": "tea, milk", "tags": ["home"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(updated.status(), 200);
    let note = host.get_json(&format!("/notes/{id}")).await;
    assert_eq!(note["body"], "tea, milk");
    assert_eq!(note["title"], "Groceries");
    assert_eq!(note["tags"], json!(["home"]));
    let tags = host.get_json("/notes/tags").await;
    assert_eq!(
        tags["tags"],
        json!([{ "tag": "books", "notes": 1 }, { "tag": "home", "notes": 1 }])
    );

    // A note the schema refuses is the client's mistake, and leaves no
    // tags behind: the batch is atomic.
    let refused = host
        .client
        .post(url("/notes"))
        .json(&json!({ "title": "", "tags": ["orphan"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let orphan = host.get_json("/notes?tag=orphan").await;
    assert_eq!(orphan["notes"], json!([]));

    let deleted = host
        .client
        .delete(url(&format!("/notes/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(host.get(&format!("/notes/{id}")).await.status(), 404);
    let tags = host.get_json("/notes/tags").await;
    assert_eq!(
        tags["tags"],
        json!([{ "tag": "books", "notes": 1 }]),
        "the note's tags went with it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meta_reports_reads_writes_row_ids_and_size() {
    let host = probe_host().await;
    let (status, done) = probe(
        &host,
        "/exec",
        json!("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); CREATE INDEX t_v ON t (v)"),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["count"], 2);

    let inserted = ok(
        &host,
        "INSERT INTO t (v) VALUES (?), (?)",
        json!(["a", "b"]),
    )
    .await;
    let meta = &inserted["meta"];
    assert_eq!(meta["last_row_id"], 2);
    assert_eq!(meta["changes"], 2);
    assert_eq!(meta["rows_written"], 2);
    assert_eq!(meta["changed_db"], true);
    assert!(meta["size_after"].as_u64().unwrap() > 0);
    assert!(meta["duration"].as_f64().unwrap() >= 0.0);

    let read = ok(&host, "SELECT id, v FROM t ORDER BY id", json!([])).await;
    assert_eq!(
        read["results"],
        json!([{ "id": 1, "v": "a" }, { "id": 2, "v": "b" }])
    );
    assert_eq!(read["meta"]["rows_read"], 2);
    assert_eq!(read["meta"]["rows_written"], 0);
    assert_eq!(read["meta"]["changed_db"], false);
    assert_eq!(read["meta"]["last_row_id"], 0, "a read inserts nothing");

    let updated = ok(&host, "UPDATE t SET v = 'z' WHERE id = ?", json!([1])).await;
    assert_eq!(updated["meta"]["changes"], 1);
    assert_eq!(updated["meta"]["last_row_id"], 0);

    let (_, first) = probe(
        &host,
        "/first",
        json!({ "sql": "SELECT v FROM t WHERE id = ?", "params": [2], "column": "v" }),
    )
    .await;
    assert_eq!(first["first"], "b");
    let (_, none) = probe(
        &host,
        "/first",
        json!({ "sql": "SELECT v FROM t WHERE id = ?", "params": [99] }),
    )
    .await;
    assert_eq!(none["first"], Value::Null);
    let (_, raw) = probe(
        &host,
        "/raw",
        json!({ "sql": "SELECT id, v FROM t ORDER BY id" }),
    )
    .await;
    assert_eq!(raw["raw"], json!([[1, "z"], [2, "b"]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_leaves_nothing_behind() {
    let host = probe_host().await;
    ok(&host, "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL CHECK (balance >= 0))", json!([])).await;
    ok(
        &host,
        "INSERT INTO accounts VALUES (1, 10), (2, 0)",
        json!([]),
    )
    .await;
    let transfer = |amount: i64| {
        json!([
            { "sql": "UPDATE accounts SET balance = balance + ? WHERE id = 2", "params": [amount] },
            { "sql": "INSERT INTO accounts VALUES (3, 0)" },
            { "sql": "UPDATE accounts SET balance = balance - ? WHERE id = 1", "params": [amount] },
        ])
    };
    let (status, failed) = probe(&host, "/batch", transfer(50)).await;
    assert_eq!(status, 400);
    assert_eq!(failed["error"], "constraint", "{failed}");
    let balances = ok(
        &host,
        "SELECT id, balance FROM accounts ORDER BY id",
        json!([]),
    )
    .await;
    assert_eq!(
        balances["results"],
        json!([{ "id": 1, "balance": 10 }, { "id": 2, "balance": 0 }]),
        "neither the first update nor the insert survived"
    );

    let (status, done) = probe(&host, "/batch", transfer(4)).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done.as_array().unwrap().len(), 3);
    assert_eq!(done[1]["meta"]["last_row_id"], 3);
    let balances = ok(
        &host,
        "SELECT sum(balance) AS total, count(*) AS n FROM accounts",
        json!([]),
    )
    .await;
    assert_eq!(balances["results"], json!([{ "total": 10, "n": 3 }]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_sql_is_refused_what_object_sql_is() {
    let host = probe_host().await;
    for sql in [
        "ATTACH 'other.sqlite' AS other",
        "PRAGMA journal_mode = DELETE",
        "PRAGMA synchronous = OFF",
        "BEGIN",
        "CREATE TABLE _cf_kv (k TEXT)",
        "SELECT * FROM _verge_meta",
        "SELECT load_extension('x')",
        "CREATE TEMP TABLE t (x)",
    ] {
        refused(&host, sql, json!([]), "denied").await;
    }
    refused(&host, "SELEKT 1", json!([]), "syntax").await;
    refused(&host, "SELECT ?", json!([]), "mismatch").await;
    ok(&host, "PRAGMA table_list", json!([])).await;

    let (_, unknown) = probe(&host, "/query?binding=NOPE", json!({ "sql": "SELECT 1" })).await;
    assert_eq!(unknown["error"], "unknown-binding", "{unknown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runaway_query_is_interrupted_and_the_host_carries_on() {
    let host = probe_host().await;
    let message = refused(
        &host,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n",
        json!([]),
        "timeout",
    )
    .await;
    assert!(message.contains("limits.sql_ms"), "{message}");
    let answer = ok(&host, "SELECT 1 AS one", json!([])).await;
    assert_eq!(answer["results"], json!([{ "one": 1 }]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_on_size_statements_and_params_are_clear_errors() {
    let host = probe_host().await;
    ok(&host, "CREATE TABLE blobs (b BLOB)", json!([])).await;
    // The probe's database may hold 1 MiB.
    let message = refused(
        &host,
        "INSERT INTO blobs VALUES (zeroblob(2000000))",
        json!([]),
        "full",
    )
    .await;
    assert!(message.contains("limits.d1_database_mb"), "{message}");
    ok(
        &host,
        "INSERT INTO blobs VALUES (zeroblob(1000))",
        json!([]),
    )
    .await;

    let long = format!("SELECT '{}'", "x".repeat(101 << 10));
    let message = refused(&host, &long, json!([]), "too-large").await;
    assert!(message.contains("d1_statement_kb"), "{message}");

    let placeholders = vec!["?"; 101].join(", ");
    let sql = format!("SELECT {placeholders}");
    let message = refused(&host, &sql, json!(vec![1; 101]), "too-large").await;
    assert!(message.contains("d1_params"), "{message}");

    // Each result is capped, and a batch's results together.
    let big = json!({ "sql": "SELECT zeroblob(12000000) AS b" });
    let (status, body) = probe(&host, "/batch", json!([big, big, big])).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "too-large", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_bound_to_one_database_see_each_others_writes() {
    let host = probe_host().await;
    let probe_guest = guest("d1-probe");
    let other = probe_guest
        .config
        .replace("name = \"d1-probe\"", "name = \"d1-other\"")
        .replace("routes = [\"/*\"]", "routes = [\"/other/*\"]")
        .replace("binding = \"DB\"", "binding = \"SHARED\"");
    let uploaded = host
        .upload("d1-other", probe_guest.wasm.clone(), &other)
        .await;
    assert_eq!(uploaded.status(), 201);

    ok(&host, "CREATE TABLE shared (v TEXT)", json!([])).await;
    let (status, _) = probe(
        &host,
        "/other/query?binding=SHARED",
        json!({ "sql": "INSERT INTO shared VALUES ('from the other worker')" }),
    )
    .await;
    assert_eq!(status, 200);
    let read = ok(&host, "SELECT v FROM shared", json!([])).await;
    assert_eq!(read["results"], json!([{ "v": "from the other worker" }]));

    let listed = host.admin_json(Method::GET, "/v1/d1").await;
    assert_eq!(listed["databases"][0]["name"], "probe", "{listed}");
    assert_eq!(listed["databases"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d1_writes_survive_a_host_restart() {
    let data = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let probe_guest = guest("d1-probe");
    let post = |url: String, sql: &'static str| {
        let client = client.clone();
        async move {
            let response = client
                .post(format!("{url}/query"))
                .json(&json!({ "sql": sql }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{sql}");
            response.json::<Value>().await.unwrap()
        }
    };
    {
        let host = VergeProcess::serve(data.path());
        assert_eq!(host.deploy(&client, &probe_guest).await, 201);
        post(host.url.clone(), "CREATE TABLE kept (v TEXT)").await;
        post(
            host.url.clone(),
            "INSERT INTO kept VALUES ('answered, so on disk')",
        )
        .await;
        // No graceful shutdown: an answered write must already be durable.
        host.kill();
    }
    let host = VergeProcess::serve(data.path());
    let read = post(host.url.clone(), "SELECT v FROM kept").await;
    assert_eq!(read["results"], json!([{ "v": "answered, so on disk" }]));
}

/// Runs `verge d1 ARGS` in `dir` against `host`; its stdout, or a panic
/// with its stderr.
fn d1(dir: &Path, host: &VergeProcess, args: &[&str]) -> String {
    let output = d1_command(dir, host, args).output().unwrap();
    assert!(
        output.status.success(),
        "verge d1 {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn d1_command(dir: &Path, host: &VergeProcess, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_verge"));
    command
        .current_dir(dir)
        .arg("d1")
        .args(args)
        .env("VERGE_HOST", &host.admin_url)
        .env("VERGE_ADMIN_TOKEN", TOKEN);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_creates_executes_exports_imports_and_migrates() {
    let data = tempfile::tempdir().unwrap();
    let host = VergeProcess::serve(data.path());
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    std::fs::write(
        dir.join("verge.toml"),
        "name = \"app\"\n[[d1_databases]]\nbinding = \"DB\"\ndatabase_name = \"app-db\"\nmigrations_dir = \"schema\"\n",
    )
    .unwrap();

    assert!(d1(dir, &host, &["create", "app-db"]).contains("created"));
    assert!(d1(dir, &host, &["list"]).contains("app-db"));

    // Migrations: numbered files, applied in order, recorded in the
    // database; a failing one stops the run and stays unapplied.
    let created = d1(dir, &host, &["migrations", "create", "DB", "create items"]);
    assert!(created.contains("0001_create_items.sql"), "{created}");
    let first = dir.join("schema/0001_create_items.sql");
    let header = std::fs::read_to_string(&first).unwrap();
    std::fs::write(
        &first,
        format!(
            "{header}CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, data BLOB);\n"
        ),
    )
    .unwrap();
    d1(dir, &host, &["migrations", "create", "DB", "broken"]);
    std::fs::write(
        dir.join("schema/0002_broken.sql"),
        "ALTER TABLE items ADD COLUMN price INTEGER; SELECT * FROM no_such_table;",
    )
    .unwrap();
    let pending = d1(dir, &host, &["migrations", "list", "DB"]);
    assert!(pending.contains("0001_create_items.sql") && pending.contains("0002_broken.sql"));
    let failed = d1_command(dir, &host, &["migrations", "apply", "DB"])
        .output()
        .unwrap();
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("0002_broken.sql") && stderr.contains("no_such_table"),
        "{stderr}"
    );
    let pending = d1(dir, &host, &["migrations", "list", "DB"]);
    assert!(
        !pending.contains("0001") && pending.contains("0002_broken.sql"),
        "{pending}"
    );
    let columns = d1(
        dir,
        &host,
        &[
            "execute",
            "DB",
            "--command",
            "SELECT name FROM pragma_table_info('items')",
            "--json",
        ],
    );
    assert!(
        !columns.contains("price"),
        "the failed migration's ALTER was rolled back: {columns}"
    );
    std::fs::write(
        dir.join("schema/0002_broken.sql"),
        "ALTER TABLE items ADD COLUMN price INTEGER;",
    )
    .unwrap();
    assert!(d1(dir, &host, &["migrations", "apply", "DB"]).contains("applied 0002_broken.sql"));
    assert!(d1(dir, &host, &["migrations", "list", "DB"]).contains("no migrations to apply"));

    // Execute: rows as a table, or JSON.
    d1(
        dir,
        &host,
        &[
            "execute",
            "DB",
            "--command",
            "INSERT INTO items (name, data, price) VALUES ('it''s', X'00ff', 3), ('two', NULL, NULL)",
        ],
    );
    let table = d1(
        dir,
        &host,
        &[
            "execute",
            "DB",
            "--command",
            "SELECT id, name FROM items ORDER BY id",
        ],
    );
    assert!(
        table.contains("NAME") && table.contains("it's") && table.contains("two"),
        "{table}"
    );
    let json: Value = serde_json::from_str(&d1(
        dir,
        &host,
        &[
            "execute",
            "app-db",
            "--json",
            "--command",
            "SELECT count(*) AS n FROM items",
        ],
    ))
    .unwrap();
    assert_eq!(json["rows"], json!([[2]]));

    // Export → import into a new database is a round trip, migrations
    // history included.
    let dump = dir.join("dump.sql");
    d1(
        dir,
        &host,
        &["export", "DB", "--output", dump.to_str().unwrap()],
    );
    let text = std::fs::read_to_string(&dump).unwrap();
    assert!(
        text.contains("CREATE TABLE items") && text.contains("X'00ff'"),
        "{text}"
    );
    d1(dir, &host, &["create", "copy"]);
    d1(
        dir,
        &host,
        &["import", "copy", "--input", dump.to_str().unwrap()],
    );
    let copied = d1(
        dir,
        &host,
        &[
            "execute",
            "copy",
            "--json",
            "--command",
            "SELECT id, name, hex(data) AS data, price FROM items ORDER BY id",
        ],
    );
    let copied: Value = serde_json::from_str(&copied).unwrap();
    assert_eq!(
        copied["rows"],
        json!([[1, "it's", "00FF", 3], [2, "two", "", null]])
    );
    let history = d1(
        dir,
        &host,
        &[
            "execute",
            "copy",
            "--json",
            "--command",
            "SELECT name FROM d1_migrations ORDER BY id",
        ],
    );
    assert!(history.contains("0002_broken.sql"), "{history}");
    // `execute --file` of a dump works the same (wrangler's import).
    d1(dir, &host, &["create", "copy2"]);
    d1(
        dir,
        &host,
        &["execute", "copy2", "--file", dump.to_str().unwrap()],
    );
    let schema_only = dir.join("schema.sql");
    d1(
        dir,
        &host,
        &[
            "export",
            "copy2",
            "--no-data",
            "--output",
            schema_only.to_str().unwrap(),
        ],
    );
    let schema = std::fs::read_to_string(&schema_only).unwrap();
    assert!(
        schema.contains("CREATE TABLE items") && !schema.contains("INSERT"),
        "{schema}"
    );

    let missing = d1_command(dir, &host, &["export", "nope", "--output", "x.sql"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no D1 database named `nope`"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_local_works_on_dev_state() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let local = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_verge"))
            .current_dir(dir)
            .arg("d1")
            .args(args)
            .arg("--local")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    local(&[
        "execute",
        "dev-db",
        "--command",
        "CREATE TABLE t (v); INSERT INTO t VALUES (42)",
    ]);
    assert!(dir.join(".verge/d1/dev-db.sqlite").exists());
    assert!(local(&["execute", "dev-db", "--command", "SELECT v FROM t"]).contains("42"));
    assert!(local(&["list"]).contains("dev-db"));
}
