//! Fuzzes `ObjectKey` and `KeyPrefix` parsing: arbitrary strings never panic, and an accepted
//! key is exactly what it claims to be.
#![no_main]

use gos_store::{KeyPrefix, MAX_KEY_LEN, ObjectKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(key) = ObjectKey::new(s) {
        assert_eq!(key.as_str(), s);
        assert!(!s.is_empty() && s.len() <= MAX_KEY_LEN);
        assert!(key.segments().all(|seg| !seg.is_empty()));
        assert!(!s.chars().any(char::is_control));
        assert!(key.has_prefix(&KeyPrefix::from(&key)));
        if let Some(parts) = key.round_parts() {
            let again = ObjectKey::round(parts.fed_id, parts.node_id, parts.round).expect("round");
            assert_eq!(again, key);
        }
    }
    if let Ok(prefix) = KeyPrefix::new(s) {
        assert_eq!(prefix.as_str(), s);
    }
});
