//! `Serialize`/`Deserialize` for [`Error`] and [`KeyError`] (feature `serde`): the one error
//! type crosses the wire (the gateway answers with it) and comes back as the same variant.
//!
//! The representation is a private enum matched exhaustively against [`Error`], so adding a
//! variant there fails to compile here until it is given a wire form. Three fields are
//! `&'static str` in memory and a string on the wire; when decoded they are mapped back to the
//! known names (a timeout's operation, a key part, a backend name), anything else to a fixed
//! label, so that a peer cannot make the receiver allocate for the life of the process.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, KeyError};
use crate::key::ObjectKey;

#[derive(Serialize, Deserialize)]
enum Repr {
    InvalidKey(KeyRepr),
    TooLarge { size: u64, max: u64 },
    StoreFull { requested: u64, available: u64 },
    TooManyEntries { max: u64 },
    AlreadyExists { key: ObjectKey },
    Timeout { operation: String, after: Duration },
    Busy(String),
    PermissionDenied(String),
    InvalidArgument(String),
    Corrupted(String),
    Unavailable(String),
    Backend { backend: String, message: String },
}

#[derive(Serialize, Deserialize)]
enum KeyRepr {
    Empty,
    TooLong { len: u64, max: u64 },
    ControlCharacter { ch: char, position: u64 },
    EmptySegment { position: u64 },
    DotSegment { segment: String, position: u64 },
    InvalidPart { part: String, value: String },
}

/// The `&'static str` among `known` equal to `s`, or `fallback`.
fn intern(s: &str, known: &[&'static str], fallback: &'static str) -> &'static str {
    known.iter().copied().find(|k| *k == s).unwrap_or(fallback)
}

const OPERATIONS: &[&str] = &[
    "store get",
    "store put",
    "store reserve",
    "store commit",
    "store delete",
    "store release",
    "store head",
    "store keys",
    "store delete_prefix",
    "store delete_rounds_before",
    "store sweep",
    "store len",
    "store stats",
    "lock",
    "reading from the stream",
    "reading an object",
    "writing to the stream",
    "writing an object",
    "delivering to a mailbox",
    "transfer",
];

const BACKENDS: &[&str] = &["memory", "shm", "remote", "gateway", "topology"];

fn usize_of(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

fn u64_of(v: usize) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

impl From<&KeyError> for KeyRepr {
    fn from(e: &KeyError) -> Self {
        match e {
            KeyError::Empty => KeyRepr::Empty,
            KeyError::TooLong { len, max } => KeyRepr::TooLong {
                len: u64_of(*len),
                max: u64_of(*max),
            },
            KeyError::ControlCharacter { ch, position } => KeyRepr::ControlCharacter {
                ch: *ch,
                position: u64_of(*position),
            },
            KeyError::EmptySegment { position } => KeyRepr::EmptySegment {
                position: u64_of(*position),
            },
            KeyError::DotSegment { segment, position } => KeyRepr::DotSegment {
                segment: (*segment).to_owned(),
                position: u64_of(*position),
            },
            KeyError::InvalidPart { part, value } => KeyRepr::InvalidPart {
                part: (*part).to_owned(),
                value: value.clone(),
            },
        }
    }
}

impl From<KeyRepr> for KeyError {
    fn from(e: KeyRepr) -> Self {
        match e {
            KeyRepr::Empty => KeyError::Empty,
            KeyRepr::TooLong { len, max } => KeyError::TooLong {
                len: usize_of(len),
                max: usize_of(max),
            },
            KeyRepr::ControlCharacter { ch, position } => KeyError::ControlCharacter {
                ch,
                position: usize_of(position),
            },
            KeyRepr::EmptySegment { position } => KeyError::EmptySegment {
                position: usize_of(position),
            },
            KeyRepr::DotSegment { segment, position } => KeyError::DotSegment {
                segment: intern(&segment, &[".", ".."], ".."),
                position: usize_of(position),
            },
            KeyRepr::InvalidPart { part, value } => KeyError::InvalidPart {
                part: intern(&part, &["fed_id", "node_id"], "part"),
                value,
            },
        }
    }
}

impl From<&Error> for Repr {
    fn from(e: &Error) -> Self {
        match e {
            Error::InvalidKey(k) => Repr::InvalidKey(k.into()),
            Error::TooLarge { size, max } => Repr::TooLarge {
                size: *size,
                max: *max,
            },
            Error::StoreFull {
                requested,
                available,
            } => Repr::StoreFull {
                requested: *requested,
                available: *available,
            },
            Error::TooManyEntries { max } => Repr::TooManyEntries { max: *max },
            Error::AlreadyExists { key } => Repr::AlreadyExists { key: key.clone() },
            Error::Timeout { operation, after } => Repr::Timeout {
                operation: (*operation).to_owned(),
                after: *after,
            },
            Error::Busy(m) => Repr::Busy(m.clone()),
            Error::PermissionDenied(m) => Repr::PermissionDenied(m.clone()),
            Error::InvalidArgument(m) => Repr::InvalidArgument(m.clone()),
            Error::Corrupted(m) => Repr::Corrupted(m.clone()),
            Error::Unavailable(m) => Repr::Unavailable(m.clone()),
            Error::Backend { backend, source } => Repr::Backend {
                backend: (*backend).to_owned(),
                message: source.to_string(),
            },
        }
    }
}

impl From<Repr> for Error {
    fn from(e: Repr) -> Self {
        match e {
            Repr::InvalidKey(k) => Error::InvalidKey(k.into()),
            Repr::TooLarge { size, max } => Error::TooLarge { size, max },
            Repr::StoreFull {
                requested,
                available,
            } => Error::StoreFull {
                requested,
                available,
            },
            Repr::TooManyEntries { max } => Error::TooManyEntries { max },
            Repr::AlreadyExists { key } => Error::AlreadyExists { key },
            Repr::Timeout { operation, after } => Error::Timeout {
                operation: intern(&operation, OPERATIONS, "remote operation"),
                after,
            },
            Repr::Busy(m) => Error::Busy(m),
            Repr::PermissionDenied(m) => Error::PermissionDenied(m),
            Repr::InvalidArgument(m) => Error::InvalidArgument(m),
            Repr::Corrupted(m) => Error::Corrupted(m),
            Repr::Unavailable(m) => Error::Unavailable(m),
            Repr::Backend { backend, message } => {
                Error::backend(intern(&backend, BACKENDS, "remote"), message)
            }
        }
    }
}

impl Serialize for Error {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Repr::from(self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Error {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Repr::deserialize(deserializer).map(Error::from)
    }
}

impl Serialize for KeyError {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        KeyRepr::from(self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for KeyError {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        KeyRepr::deserialize(deserializer).map(KeyError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_variant() -> Vec<Error> {
        let key = ObjectKey::new("a/b").unwrap();
        vec![
            Error::InvalidKey(KeyError::EmptySegment { position: 2 }),
            Error::InvalidKey(KeyError::InvalidPart {
                part: "node_id",
                value: "a/b".into(),
            }),
            Error::InvalidKey(KeyError::ControlCharacter {
                ch: '\n',
                position: 1,
            }),
            Error::InvalidKey(KeyError::TooLong { len: 9, max: 8 }),
            Error::InvalidKey(KeyError::Empty),
            Error::TooLarge { size: 5, max: 4 },
            Error::StoreFull {
                requested: 5,
                available: 1,
            },
            Error::TooManyEntries { max: 3 },
            Error::AlreadyExists { key },
            Error::Timeout {
                operation: "store get",
                after: Duration::from_millis(1500),
            },
            Error::Busy("too many connections".into()),
            Error::PermissionDenied("read-only".into()),
            Error::InvalidArgument("fed id".into()),
            Error::Corrupted("x".into()),
            Error::Unavailable("y".into()),
            Error::backend("shm", "lock poisoned"),
        ]
    }

    #[test]
    fn every_variant_round_trips() {
        for e in every_variant() {
            let json = serde_json::to_string(&e).unwrap();
            let back: Error = serde_json::from_str(&json).unwrap();
            assert_eq!(back.to_string(), e.to_string(), "{json}");
            assert_eq!(
                std::mem::discriminant(&back),
                std::mem::discriminant(&e),
                "{e}"
            );
        }
    }

    #[test]
    fn unknown_static_names_map_to_fixed_labels() {
        let json = r#"{"Timeout":{"operation":"anything at all","after":{"secs":1,"nanos":0}}}"#;
        let back: Error = serde_json::from_str(json).unwrap();
        assert!(matches!(
            back,
            Error::Timeout {
                operation: "remote operation",
                ..
            }
        ));
        let json = r#"{"Backend":{"backend":"mystery","message":"m"}}"#;
        let back: Error = serde_json::from_str(json).unwrap();
        assert!(matches!(
            back,
            Error::Backend {
                backend: "remote",
                ..
            }
        ));
        // A key error carrying an invalid key cannot smuggle one in.
        let json = r#"{"AlreadyExists":{"key":"a//b"}}"#;
        assert!(serde_json::from_str::<Error>(json).is_err());
    }
}
