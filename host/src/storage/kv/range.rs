//! The key ranges `list` walks: a prefix as an index range, and the
//! opaque cursor that resumes after the last key of a page.

/// The least string greater than every string that starts with `prefix`,
/// or none when there is none (an empty prefix, or one of U+10FFFF only).
/// UTF-8 orders strings by code point, and SQLite's BINARY collation by
/// bytes, so this bound turns a prefix into a range the primary key
/// index answers directly.
pub(super) fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = next_char(last) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn next_char(c: char) -> Option<char> {
    match c {
        '\u{D7FF}' => Some('\u{E000}'),
        char::MAX => None,
        c => char::from_u32(c as u32 + 1),
    }
}

/// The cursor that resumes a listing after `key`.
pub(super) fn cursor_after(key: &str) -> String {
    hex::encode(key)
}

/// The key a cursor resumes after; none when it is not one of ours.
pub(super) fn cursor_key(cursor: &str) -> Option<String> {
    String::from_utf8(hex::decode(cursor).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_ends_at_its_last_character_plus_one() {
        assert_eq!(prefix_end("user:").as_deref(), Some("user;"));
        assert_eq!(prefix_end("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{10FFFF}"), None);
        assert_eq!(prefix_end(""), None);
        for key in ["user:", "user:zzz", "user:\u{10FFFF}\u{10FFFF}"] {
            assert!(key < prefix_end("user:").unwrap().as_str(), "{key}");
        }
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        assert_eq!(
            cursor_key(&cursor_after("flag:é")).as_deref(),
            Some("flag:é")
        );
        assert_eq!(cursor_key("not hex"), None);
        assert_eq!(cursor_key("ff"), None);
    }
}
