use crate::{Error, Result};

/// HTTP headers: an ordered list of name/value pairs where names compare
/// case-insensitively and may repeat.
///
/// Names are stored lower-case, as HTTP/2 sends them.
///
/// ```
/// use verge::Headers;
///
/// let mut headers = Headers::new();
/// headers.set("Content-Type", "text/plain")?;
/// headers.append("Set-Cookie", "a=1")?;
/// headers.append("Set-Cookie", "b=2")?;
/// assert_eq!(headers.get("content-type"), Some("text/plain"));
/// assert_eq!(headers.get_all("set-cookie").collect::<Vec<_>>(), ["a=1", "b=2"]);
/// # Ok::<(), verge::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, String)>,
}

impl Headers {
    /// An empty header list.
    pub fn new() -> Self {
        Self::default()
    }

    /// The first value of `name`, if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_all(name).next()
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a, 'n>(&'a self, name: &'n str) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.entries
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Replaces every value of `name` with `value`.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let (name, value) = validated(name, value)?;
        self.entries.retain(|(n, _)| *n != name);
        self.entries.push((name, value));
        Ok(())
    }

    /// Adds a value for `name`, keeping the ones already there.
    pub fn append(&mut self, name: &str, value: &str) -> Result<()> {
        let (name, value) = validated(name, value)?;
        self.entries.push((name, value));
        Ok(())
    }

    /// Removes every value of `name`.
    pub fn delete(&mut self, name: &str) {
        self.entries.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// All entries in order, names lower-case.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub(crate) fn from_wire(entries: Vec<(String, String)>) -> Self {
        Self { entries }
    }

    pub(crate) fn into_wire(self) -> Vec<(String, String)> {
        self.entries
    }
}

/// Checks a header against RFC 9110's token and field-value grammar, so a bad
/// header fails here, at the line that set it, rather than in the host.
fn validated(name: &str, value: &str) -> Result<(String, String)> {
    let token = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(Error::InvalidHeader(format!("bad name {name:?}")));
    }
    if value.bytes().any(|c| (c < 0x20 && c != b'\t') || c == 0x7f) {
        return Err(Error::InvalidHeader(format!(
            "bad value for {name:?}: control characters are not allowed"
        )));
    }
    Ok((name.to_ascii_lowercase(), value.trim().to_owned()))
}

impl<'a> IntoIterator for &'a Headers {
    type Item = (&'a str, &'a str);
    type IntoIter = Box<dyn Iterator<Item = (&'a str, &'a str)> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.entries())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_case_insensitively() {
        let mut headers = Headers::new();
        headers.set("X-Thing", "1").unwrap();
        headers.set("x-thing", "2").unwrap();
        assert_eq!(headers.get_all("X-THING").collect::<Vec<_>>(), ["2"]);
        headers.delete("X-Thing");
        assert!(!headers.has("x-thing"));
    }

    #[test]
    fn rejects_invalid_names_and_values() {
        let mut headers = Headers::new();
        assert!(headers.set("bad name", "v").is_err());
        assert!(headers.set("", "v").is_err());
        assert!(headers.set("ok", "line\r\nbreak").is_err());
    }
}
