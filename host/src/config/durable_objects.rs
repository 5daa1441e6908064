//! `[[durable_objects.bindings]]` and `[[migrations]]`, as wrangler.toml
//! has them: which namespaces a worker reaches under which names, and the
//! history of the classes it defines.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::ConfigError;

/// `[durable_objects]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurableObjects {
    #[serde(default)]
    pub bindings: Vec<ObjectBinding>,
}

/// One namespace the worker reaches as `env.durable_object(name)`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectBinding {
    /// The name code uses, e.g. `INVENTORY`.
    pub name: String,
    /// The class, e.g. `Inventory`.
    pub class_name: String,
    /// The worker that defines the class, when it is not this one.
    #[serde(default)]
    pub script_name: Option<String>,
}

/// One step in the history of the worker's classes. Applied once, in order,
/// when a version that lists it is activated.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Migration {
    pub tag: String,
    #[serde(default)]
    pub new_sqlite_classes: Vec<String>,
    /// Cloudflare's key-value-backed classes; Verge's are all SQLite-backed.
    #[serde(default)]
    pub new_classes: Vec<String>,
    #[serde(default)]
    pub renamed_classes: Vec<RenamedClass>,
    #[serde(default)]
    pub deleted_classes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenamedClass {
    pub from: String,
    pub to: String,
}

/// Checks the bindings and migrations together, returning the classes the
/// worker defines once every migration has run.
pub(super) fn validate(
    objects: &DurableObjects,
    migrations: &[Migration],
) -> Result<BTreeSet<String>, ConfigError> {
    let mut classes = BTreeSet::new();
    let mut tags = BTreeSet::new();
    for migration in migrations {
        let tag = &migration.tag;
        if tag.is_empty() || !tags.insert(tag.as_str()) {
            return Err(ConfigError::new(format!(
                "migration tag {tag:?} is empty or repeated"
            )));
        }
        let bad = |why: String| ConfigError::new(format!("migration {tag:?}: {why}"));
        if let Some(class) = migration.new_classes.first() {
            return Err(bad(format!(
                "Verge's Durable Objects are all SQLite-backed: list {class:?} under new_sqlite_classes"
            )));
        }
        for class in &migration.new_sqlite_classes {
            check_class_name(class).map_err(bad)?;
            if !classes.insert(class.clone()) {
                return Err(bad(format!("class {class:?} already exists")));
            }
        }
        for RenamedClass { from, to } in &migration.renamed_classes {
            check_class_name(to).map_err(bad)?;
            if !classes.remove(from) {
                return Err(bad(format!(
                    "renames {from:?}, which no earlier migration creates"
                )));
            }
            if !classes.insert(to.clone()) {
                return Err(bad(format!(
                    "renames {from:?} to {to:?}, which already exists"
                )));
            }
        }
        for class in &migration.deleted_classes {
            if !classes.remove(class) {
                return Err(bad(format!(
                    "deletes {class:?}, which no earlier migration creates"
                )));
            }
        }
    }
    let mut names = BTreeSet::new();
    for binding in &objects.bindings {
        let name = &binding.name;
        super::check_binding_name(name)?;
        if !names.insert(name.as_str()) {
            return Err(ConfigError::new(format!(
                "durable object binding {name:?} appears twice"
            )));
        }
        if binding.script_name.is_none() && !classes.contains(&binding.class_name) {
            return Err(ConfigError::new(unknown_class(
                name,
                &binding.class_name,
                &classes,
            )));
        }
    }
    Ok(classes)
}

/// Why a binding's class is unknown: most likely a typo of a class the
/// migrations create, else a class no migration creates yet.
fn unknown_class(binding: &str, class: &str, created: &BTreeSet<String>) -> String {
    let add = format!("add [[migrations]] with new_sqlite_classes = [{class:?}]");
    let closest = created
        .iter()
        .map(|known| {
            (
                edit_distance(&known.to_lowercase(), &class.to_lowercase()),
                known,
            )
        })
        .min();
    match closest {
        Some((distance, known)) if distance <= 2 + class.len() / 4 => format!(
            "binding {binding:?} uses class {class:?}, which no migration creates: did you mean {known:?}? \
             (if {class:?} is a new class, {add})"
        ),
        _ if created.is_empty() => {
            format!("binding {binding:?} uses class {class:?}, which no migration creates: {add}")
        }
        _ => format!(
            "binding {binding:?} uses class {class:?}, which no migration creates (they create {:?}): {add}",
            created
        ),
    }
}

/// Levenshtein distance: single-character insertions, deletions and
/// substitutions that turn `a` into `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substituted = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substituted.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

fn check_class_name(class: &str) -> Result<(), String> {
    let valid = class
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && class.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!("{class:?} is not a valid class name"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migration(tag: &str) -> Migration {
        Migration {
            tag: tag.into(),
            new_sqlite_classes: vec![],
            new_classes: vec![],
            renamed_classes: vec![],
            deleted_classes: vec![],
        }
    }

    fn bind(name: &str, class: &str) -> DurableObjects {
        DurableObjects {
            bindings: vec![ObjectBinding {
                name: name.into(),
                class_name: class.into(),
                script_name: None,
            }],
        }
    }

    #[test]
    fn classes_follow_creations_renames_and_deletions() {
        let mut v1 = migration("v1");
        v1.new_sqlite_classes = vec!["Counter".into(), "Old".into()];
        let mut v2 = migration("v2");
        v2.renamed_classes = vec![RenamedClass {
            from: "Counter".into(),
            to: "Tally".into(),
        }];
        v2.deleted_classes = vec!["Old".into()];
        let classes = validate(&bind("TALLY", "Tally"), &[v1, v2]).unwrap();
        assert_eq!(classes.into_iter().collect::<Vec<_>>(), ["Tally"]);
    }

    #[test]
    fn binding_to_an_unknown_class_is_refused() {
        let err = validate(&bind("X", "Missing"), &[]).unwrap_err();
        assert!(
            err.to_string()
                .contains("new_sqlite_classes = [\"Missing\"]"),
            "{err}"
        );
    }

    #[test]
    fn a_typo_of_a_created_class_gets_the_created_name() {
        let mut v1 = migration("v1");
        v1.new_sqlite_classes = vec!["Counter".into(), "ChatRoom".into()];
        let err = validate(&bind("COUNTER", "Conter"), &[v1.clone()]).unwrap_err();
        assert!(
            err.to_string().contains("did you mean \"Counter\"?"),
            "{err}"
        );
        let err = validate(&bind("LIMITER", "RateLimiter"), &[v1]).unwrap_err();
        assert!(
            err.to_string()
                .contains("(they create {\"ChatRoom\", \"Counter\"})"),
            "{err}"
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn kv_backed_classes_point_to_sqlite() {
        let mut v1 = migration("v1");
        v1.new_classes = vec!["A".into()];
        let err = validate(&DurableObjects::default(), &[v1]).unwrap_err();
        assert!(err.to_string().contains("new_sqlite_classes"), "{err}");
    }
}
