//! `time_spent` strings → exact minutes, and minutes → hours.

/// Parses a time entry's `time_spent`: `h:mm`, `hh:mm`, `hhh:mm` (any number of hour digits up to
/// 5) and `hh:mm:ss` (seconds rounded to the nearest minute, half up). Minutes and seconds must
/// be two digits below 60. Everything else (`abc`, `-1:00`, `99999:99`, empty) is an error that
/// quotes the value.
pub fn parse_time_spent(raw: &str) -> Result<i64, String> {
    let bad = || format!("invalid time_spent {raw:?} (expected hh:mm)");
    let value = raw.trim();
    let parts: Vec<&str> = value.split(':').collect();
    let digits = |s: &str, min: usize, max: usize| -> Option<i64> {
        (s.len() >= min && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (hours, minutes, seconds) = match parts.as_slice() {
        [h, m] => (digits(h, 1, 5), digits(m, 2, 2), Some(0)),
        [h, m, s] => (digits(h, 1, 5), digits(m, 2, 2), digits(s, 2, 2)),
        _ => return Err(bad()),
    };
    let (Some(hours), Some(minutes), Some(seconds)) = (hours, minutes, seconds) else {
        return Err(bad());
    };
    if minutes >= 60 || seconds >= 60 {
        return Err(bad());
    }
    Ok(hours * 60 + minutes + i64::from(seconds >= 30))
}

/// Minutes as fractional hours (for display and the `*_hours` columns; sums use minutes).
pub fn hours(minutes: i64) -> f64 {
    minutes as f64 / 60.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        assert_eq!(parse_time_spent("01:30"), Ok(90));
        assert_eq!(parse_time_spent("1:05"), Ok(65));
        assert_eq!(parse_time_spent("00:00"), Ok(0));
        assert_eq!(parse_time_spent("123:45"), Ok(123 * 60 + 45));
        assert_eq!(parse_time_spent("02:10:29"), Ok(130));
        assert_eq!(parse_time_spent("02:10:30"), Ok(131));
        assert_eq!(parse_time_spent(" 10:15 "), Ok(615));
    }

    #[test]
    fn rejected_forms_quote_the_value() {
        for bad in [
            "abc",
            "-1:00",
            "99999:99",
            "",
            "1:5",
            "1:60",
            "1:00:60",
            ":30",
            "1:30:",
            "+1:00",
            "1.5",
            "123456:00",
        ] {
            let err = parse_time_spent(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }
}
