//! Sizes and durations on the command line and in output: the same types and spellings as
//! the config file (`gos::config::ByteSize`, humantime durations; docs/config.md).

use std::time::Duration;

pub(crate) use gos::config::fmt_size;

/// A duration flag: `5s`, `250ms`, `1m 30s`, or a bare number of seconds (`0.5`, the older
/// spelling). More than 0 and at most an hour.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let d = match text.parse::<f64>() {
        Ok(secs) if (0.0..=3600.0).contains(&secs) => Duration::from_secs_f64(secs),
        Ok(_) => return Err(format!("`{text}` is not between 0 and 3600 seconds")),
        Err(_) => humantime::parse_duration(text)
            .map_err(|e| format!("`{text}` is not a duration such as \"5s\" or \"250ms\": {e}"))?,
    };
    if d.is_zero() || d > Duration::from_secs(3600) {
        return Err(format!("`{text}` must be more than 0 and at most 1h"));
    }
    Ok(d)
}

/// A duration for people: `1s 500ms`, `250ms`.
pub(crate) fn fmt_duration(d: Duration) -> String {
    // Whole milliseconds: humantime would print every nanosecond.
    let ms = Duration::from_millis(d.as_millis().try_into().unwrap_or(u64::MAX));
    humantime::format_duration(ms).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_take_the_config_spellings() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        for bad in ["0", "0s", "-1", "2h", "soon", "NaN"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(fmt_duration(Duration::from_micros(1_500_123)), "1s 500ms");
        assert_eq!(fmt_size(52_428_800), "50.0 MiB");
    }
}
