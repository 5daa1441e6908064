//! The code on docs/sdk.md is cut from the bundled examples, which the
//! other tests build and run; this keeps each snippet in step with its
//! source.

use std::path::Path;

#[test]
fn sdk_guide_snippets_match_the_examples() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let guide = std::fs::read_to_string(repo.join("docs/sdk.md")).unwrap();
    let mut checked = 0;
    let mut rest = guide.as_str();
    while let Some(start) = rest.find("<!-- from ") {
        let after = &rest[start + "<!-- from ".len()..];
        let (source, after) = after
            .split_once(" -->")
            .expect("unterminated source marker");
        let block = after
            .trim_start()
            .strip_prefix("```rust\n")
            .unwrap_or_else(|| panic!("no rust block after the marker for {source}"));
        let (snippet, after) = block.split_once("```").unwrap();
        let code =
            std::fs::read_to_string(repo.join(source)).unwrap_or_else(|e| panic!("{source}: {e}"));
        assert!(
            code.contains(snippet),
            "docs/sdk.md shows code that is no longer in {source}:\n{snippet}"
        );
        checked += 1;
        rest = after;
    }
    assert!(checked >= 5, "only {checked} snippets found");
}
