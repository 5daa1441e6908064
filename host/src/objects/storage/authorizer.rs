//! What guest SQL may do, decided by SQLite's authorizer when a statement
//! is prepared: no ATTACH, no transaction control (the host owns it), no
//! PRAGMA that changes how the file is kept, no extensions, no virtual
//! tables but FTS5, no TEMP objects (they would live outside the object's
//! size limit), and no access to Verge's own `_verge_` tables nor to
//! `_cf_` ones (reserved, as on Cloudflare). D1 databases
//! (`storage/d1/`) run guest SQL under the same authorizer.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};

/// Tables guests can neither read nor write: the host's own state, and
/// the names Cloudflare reserves for its own, which a ported worker must
/// not come to depend on.
pub(super) const INTERNAL_PREFIXES: &[&str] = &[VERGE_PREFIX, "_cf_"];

/// The prefix of the tables Verge itself keeps in a database.
pub(super) const VERGE_PREFIX: &str = "_verge_";

/// PRAGMAs guests may run: they read schema or state, or check integrity.
/// Everything else (journal mode, sync, page limits...) is the host's.
const ALLOWED_PRAGMAS: &[&str] = &[
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "page_count",
    "page_size",
    "freelist_count",
    "quick_check",
    "integrity_check",
    "optimize",
    "defer_foreign_keys",
    // FTS5 reads it to know whether its cached index state is stale.
    "data_version",
];

/// The authorizer's view: whether the host itself is running a statement,
/// and why the last guest statement was refused.
#[derive(Default)]
pub(crate) struct Guard {
    internal: AtomicBool,
    denial: Mutex<Option<String>>,
}

impl Guard {
    /// Host statements (`true`) pass unchecked; guest ones are checked.
    pub(crate) fn set_internal(&self, internal: bool) {
        self.internal.store(internal, Ordering::Relaxed);
    }

    /// Forgets the reason of an earlier refusal, before a guest statement.
    pub(crate) fn clear_denial(&self) {
        *self.denial() = None;
    }

    /// Why the last guest statement was refused, if it was.
    pub(crate) fn take_denial(&self) -> Option<String> {
        self.denial().take()
    }

    fn denial(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.denial.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decides whether the statement being prepared may take `ctx.action`.
    pub(crate) fn authorize(&self, ctx: AuthContext<'_>) -> Authorization {
        if self.internal.load(Ordering::Relaxed) {
            return Authorization::Allow;
        }
        match refusal(&ctx.action) {
            None => Authorization::Allow,
            Some(reason) => {
                *self.denial() = Some(reason);
                Authorization::Deny
            }
        }
    }
}

/// Why a guest may not take `action`, or `None` when it may.
fn refusal(action: &AuthAction<'_>) -> Option<String> {
    use AuthAction as A;
    let internal_table = |table: &str| {
        let lower = table.to_ascii_lowercase();
        INTERNAL_PREFIXES
            .iter()
            .any(|prefix| lower.starts_with(prefix))
            .then(|| format!("`{table}` is internal to Verge"))
    };
    match action {
        A::Attach { .. } | A::Detach { .. } => {
            Some("ATTACH and DETACH are not allowed: an object has exactly one database".into())
        }
        A::Transaction { .. } | A::Savepoint { .. } => Some(
            "BEGIN, COMMIT and SAVEPOINT are managed by Verge: each event is already atomic; \
             use storage.transaction_sync(|| ...) for a nested transaction"
                .into(),
        ),
        A::Pragma {
            pragma_name,
            pragma_value,
        } => {
            let name = pragma_name.to_ascii_lowercase();
            let read_only_user_version = name == "user_version" && pragma_value.is_none();
            (!ALLOWED_PRAGMAS.contains(&name.as_str()) && !read_only_user_version)
                .then(|| format!("PRAGMA {pragma_name} is managed by Verge"))
        }
        A::Function { function_name } if function_name.eq_ignore_ascii_case("load_extension") => {
            Some("loading extensions is not allowed".into())
        }
        A::CreateTempTable { .. }
        | A::CreateTempIndex { .. }
        | A::CreateTempTrigger { .. }
        | A::CreateTempView { .. } => Some(
            "TEMP tables, indexes, triggers and views are not allowed: they would live outside the object's storage limit"
                .into(),
        ),
        A::CreateVtable { module_name, .. } | A::DropVtable { module_name, .. }
            if !module_name.eq_ignore_ascii_case("fts5") =>
        {
            Some(format!(
                "virtual table module `{module_name}` is not available (fts5 is)"
            ))
        }
        A::Read { table_name, .. }
        | A::Insert { table_name }
        | A::Update { table_name, .. }
        | A::Delete { table_name }
        | A::CreateTable { table_name }
        | A::DropTable { table_name }
        | A::CreateIndex { table_name, .. }
        | A::DropIndex { table_name, .. }
        | A::CreateTrigger { table_name, .. }
        | A::DropTrigger { table_name, .. }
        | A::AlterTable { table_name, .. }
        | A::Analyze { table_name } => internal_table(table_name),
        A::CreateView { view_name } | A::DropView { view_name } => internal_table(view_name),
        _ => None,
    }
}
