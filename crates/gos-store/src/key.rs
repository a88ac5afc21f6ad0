//! `ObjectKey`, a validated `/`-separated key, and `KeyPrefix`, a segment-wise prefix of keys.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::error::KeyError;

/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// A validated object key: non-empty, at most [`MAX_KEY_LEN`] bytes, no control characters,
/// made of non-empty `/`-separated segments, none of them `.` or `..`.
///
/// Cloning is cheap (a reference count). Keys order and compare as their strings.
///
/// ```
/// use gos_store::ObjectKey;
/// let key: ObjectKey = "fed/node_3/round_5".parse()?;
/// assert_eq!(key.segments().collect::<Vec<_>>(), ["fed", "node_3", "round_5"]);
/// # Ok::<(), gos_store::KeyError>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(try_from = "String", into = "String")
)]
pub struct ObjectKey(Arc<str>);

/// The parts of a round key `{fed_id}/{node_id}/round_{round}`, borrowed from the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundParts<'a> {
    /// The federation id (first segment).
    pub fed_id: &'a str,
    /// The node id (second segment).
    pub node_id: &'a str,
    /// The round number.
    pub round: u64,
}

impl ObjectKey {
    /// Validates `key` and makes an `ObjectKey` of it.
    pub fn new(key: impl AsRef<str>) -> Result<Self, KeyError> {
        let key = key.as_ref();
        validate_path(key)?;
        Ok(ObjectKey(Arc::from(key)))
    }

    /// The seed's key convention: `{fed_id}/{node_id}/round_{round}`.
    ///
    /// `fed_id` and `node_id` must each be one non-empty segment (no `/`).
    pub fn round(fed_id: &str, node_id: &str, round: u64) -> Result<Self, KeyError> {
        check_part("fed_id", fed_id)?;
        check_part("node_id", node_id)?;
        ObjectKey::new(format!("{fed_id}/{node_id}/round_{round}"))
    }

    /// Parses a key made by [`ObjectKey::round`] back into its parts; `None` for any other
    /// shape (the round number must be canonical decimal: `round_7`, not `round_07`).
    pub fn round_parts(&self) -> Option<RoundParts<'_>> {
        let mut segments = self.segments();
        let (fed_id, node_id, last) = (segments.next()?, segments.next()?, segments.next()?);
        if segments.next().is_some() {
            return None;
        }
        let digits = last.strip_prefix("round_")?;
        let canonical = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'));
        if !canonical {
            return None;
        }
        Some(RoundParts {
            fed_id,
            node_id,
            round: digits.parse().ok()?,
        })
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `/`-separated segments of the key, each non-empty.
    pub fn segments(&self) -> impl Iterator<Item = &str> + '_ {
        self.0.split('/')
    }

    /// True when `prefix` is this key's prefix segment-wise: the root prefix, the key itself,
    /// or the key's leading segments (`a/b` is a prefix of `a/b/c`, not of `a/bc`).
    pub fn has_prefix(&self, prefix: &KeyPrefix) -> bool {
        let p = prefix.as_str();
        p.is_empty()
            || self
                .0
                .strip_prefix(p)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// True when this is a round key of federation `fed_id` (`{fed_id}/{node}/round_{n}`,
    /// see [`round_parts`](ObjectKey::round_parts)) with `n < round`: what
    /// [`ObjectStore::delete_rounds_before`](crate::ObjectStore::delete_rounds_before) removes.
    ///
    /// ```
    /// use gos_store::ObjectKey;
    /// let key = ObjectKey::round("fed", "node_1", 4)?;
    /// assert!(key.is_round_before("fed", 5));
    /// assert!(!key.is_round_before("fed", 4));
    /// assert!(!key.is_round_before("other", 5));
    /// # Ok::<(), gos_store::KeyError>(())
    /// ```
    pub fn is_round_before(&self, fed_id: &str, round: u64) -> bool {
        self.round_parts()
            .is_some_and(|p| p.fed_id == fed_id && p.round < round)
    }

    /// A new key with `segment` appended (`a/b` + `c` = `a/b/c`); `segment` may itself hold
    /// several `/`-separated segments.
    pub fn join(&self, segment: &str) -> Result<Self, KeyError> {
        ObjectKey::new(format!("{}/{segment}", self.0))
    }
}

fn check_part(part: &'static str, value: &str) -> Result<(), KeyError> {
    if value.is_empty() || value.contains('/') {
        return Err(KeyError::InvalidPart {
            part,
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// Checks a non-empty key-shaped path: length, control characters, empty segments.
fn validate_path(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong {
            len: key.len(),
            max: MAX_KEY_LEN,
        });
    }
    if let Some((position, ch)) = key.char_indices().find(|(_, c)| c.is_control()) {
        return Err(KeyError::ControlCharacter { ch, position });
    }
    let mut start = 0;
    for segment in key.split('/') {
        if segment.is_empty() {
            return Err(KeyError::EmptySegment { position: start });
        }
        if segment == "." || segment == ".." {
            let segment = if segment == "." { "." } else { ".." };
            return Err(KeyError::DotSegment {
                segment,
                position: start,
            });
        }
        start += segment.len() + 1;
    }
    Ok(())
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl FromStr for ObjectKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        ObjectKey::new(s)
    }
}

impl TryFrom<&str> for ObjectKey {
    type Error = KeyError;
    fn try_from(s: &str) -> Result<Self, KeyError> {
        ObjectKey::new(s)
    }
}

impl TryFrom<String> for ObjectKey {
    type Error = KeyError;
    fn try_from(s: String) -> Result<Self, KeyError> {
        ObjectKey::new(s)
    }
}

impl From<ObjectKey> for String {
    fn from(key: ObjectKey) -> String {
        key.0.to_string()
    }
}

impl AsRef<str> for ObjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for ObjectKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// A segment-wise key prefix: the root (matches every key) or a key-shaped path such as
/// `fed` (a federation) or `fed/node_3` (one node of it). See [`ObjectKey::has_prefix`].
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(try_from = "String", into = "String")
)]
pub struct KeyPrefix(Arc<str>);

impl KeyPrefix {
    /// The root prefix, which every key has.
    pub fn root() -> Self {
        KeyPrefix(Arc::from(""))
    }

    /// A prefix from a path; the empty string is the root, anything else must be a valid key.
    pub fn new(prefix: impl AsRef<str>) -> Result<Self, KeyError> {
        let prefix = prefix.as_ref();
        if !prefix.is_empty() {
            validate_path(prefix)?;
        }
        Ok(KeyPrefix(Arc::from(prefix)))
    }

    /// The prefix of a federation's keys: `fed_id` must be one segment (what
    /// [`ObjectKey::round`] accepts as a `fed_id`).
    pub fn federation(fed_id: &str) -> Result<Self, KeyError> {
        check_part("fed_id", fed_id)?;
        KeyPrefix::new(fed_id)
    }

    /// The prefix as a string (empty for the root).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for the root prefix.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<ObjectKey> for KeyPrefix {
    fn from(key: ObjectKey) -> Self {
        KeyPrefix(key.0)
    }
}

impl From<&ObjectKey> for KeyPrefix {
    fn from(key: &ObjectKey) -> Self {
        KeyPrefix(Arc::clone(&key.0))
    }
}

impl FromStr for KeyPrefix {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        KeyPrefix::new(s)
    }
}

impl TryFrom<String> for KeyPrefix {
    type Error = KeyError;
    fn try_from(s: String) -> Result<Self, KeyError> {
        KeyPrefix::new(s)
    }
}

impl From<KeyPrefix> for String {
    fn from(prefix: KeyPrefix) -> String {
        prefix.0.to_string()
    }
}

impl fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn dot_segments_are_refused() {
        for (key, segment, position) in [
            (".", ".", 0),
            ("..", "..", 0),
            ("fed/../other", "..", 4),
            ("fed/node/.", ".", 9),
            ("./fed", ".", 0),
        ] {
            assert_eq!(
                ObjectKey::new(key),
                Err(KeyError::DotSegment { segment, position }),
                "{key}"
            );
        }
        assert!(KeyPrefix::new("fed/..").is_err());
        // Dots inside a segment are fine.
        for key in [
            "fed/.hidden",
            "fed/a..b",
            "fed/.../x",
            "v1.2/node_0/round_3",
        ] {
            assert!(ObjectKey::new(key).is_ok(), "{key}");
        }
    }

    #[test]
    fn each_bad_key_has_its_own_error() {
        assert_eq!(ObjectKey::new(""), Err(KeyError::Empty));
        let long = "a".repeat(MAX_KEY_LEN + 1);
        assert_eq!(
            ObjectKey::new(&long),
            Err(KeyError::TooLong {
                len: MAX_KEY_LEN + 1,
                max: MAX_KEY_LEN
            })
        );
        assert!(ObjectKey::new("a".repeat(MAX_KEY_LEN)).is_ok());
        assert_eq!(
            ObjectKey::new("ab\ncd"),
            Err(KeyError::ControlCharacter {
                ch: '\n',
                position: 2
            })
        );
        assert_eq!(
            ObjectKey::new("/a"),
            Err(KeyError::EmptySegment { position: 0 })
        );
        assert_eq!(
            ObjectKey::new("a//b"),
            Err(KeyError::EmptySegment { position: 2 })
        );
        assert_eq!(
            ObjectKey::new("a/"),
            Err(KeyError::EmptySegment { position: 2 })
        );
        assert!(matches!(
            ObjectKey::round("a/b", "n", 1),
            Err(KeyError::InvalidPart { part: "fed_id", .. })
        ));
        assert!(matches!(
            ObjectKey::round("f", "", 1),
            Err(KeyError::InvalidPart {
                part: "node_id",
                ..
            })
        ));
    }

    #[test]
    fn round_keys_round_trip_and_other_shapes_do_not_parse() {
        let key = ObjectKey::round("my_experiment", "client_7", 42).unwrap();
        assert_eq!(key.as_str(), "my_experiment/client_7/round_42");
        let p = key.round_parts().unwrap();
        assert_eq!(
            (p.fed_id, p.node_id, p.round),
            ("my_experiment", "client_7", 42)
        );
        for other in [
            "a/b",
            "a/b/c/round_1",
            "a/b/round_",
            "a/b/round_x",
            "a/b/round_01",
        ] {
            assert_eq!(
                ObjectKey::new(other).unwrap().round_parts(),
                None,
                "{other}"
            );
        }
        let max = ObjectKey::round("f", "n", u64::MAX).unwrap();
        assert_eq!(max.round_parts().unwrap().round, u64::MAX);
    }

    #[test]
    fn prefixes_match_whole_segments() {
        let key = ObjectKey::new("fed/node_1/round_3").unwrap();
        for yes in ["", "fed", "fed/node_1", "fed/node_1/round_3"] {
            assert!(key.has_prefix(&KeyPrefix::new(yes).unwrap()), "{yes}");
        }
        for no in ["fe", "fed/node_", "fed/node_1/round_30", "other"] {
            assert!(!key.has_prefix(&KeyPrefix::new(no).unwrap()), "{no}");
        }
        assert!(KeyPrefix::new("a//").is_err());
        assert!(KeyPrefix::root().is_root());
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serde_validates_on_the_way_in() {
        let key = ObjectKey::new("a/b").unwrap();
        assert_eq!(serde_json::to_string(&key).unwrap(), "\"a/b\"");
        assert_eq!(serde_json::from_str::<ObjectKey>("\"a/b\"").unwrap(), key);
        assert!(serde_json::from_str::<ObjectKey>("\"a//b\"").is_err());
        assert!(serde_json::from_str::<ObjectKey>("\"\"").is_err());
        assert!(serde_json::from_str::<KeyPrefix>("\"\"").unwrap().is_root());
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_strings_never_panics_and_accepts_only_valid_keys(s in "\\PC{0,40}|[a/\\n]{0,12}") {
            match ObjectKey::new(&s) {
                Ok(key) => {
                    prop_assert_eq!(key.as_str(), s.as_str());
                    prop_assert!(key.segments().all(|seg| !seg.is_empty()));
                    prop_assert!(!s.chars().any(char::is_control));
                }
                Err(_) => prop_assert!(s.is_empty() || s.contains("//") || s.starts_with('/')
                    || s.ends_with('/') || s.chars().any(char::is_control) || s.len() > MAX_KEY_LEN
                    || s.split('/').any(|seg| seg == "." || seg == "..")),
            }
        }

        #[test]
        fn round_keys_round_trip(fed in "[a-z0-9_.-]{1,12}", node in "[a-z0-9_.-]{1,12}", round: u64) {
            prop_assume!(![".", ".."].contains(&fed.as_str()) && ![".", ".."].contains(&node.as_str()));
            let key = ObjectKey::round(&fed, &node, round).unwrap();
            let p = key.round_parts().unwrap();
            prop_assert_eq!((p.fed_id, p.node_id, p.round), (fed.as_str(), node.as_str(), round));
        }
    }
}
