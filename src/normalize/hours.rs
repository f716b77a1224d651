//! `time_spent` strings → seconds and minutes, and minutes → hours.
//!
//! Sums are made in seconds and rounded to minutes once ([`minutes_of_seconds`]): ten
//! 30-second entries are 5 minutes, not ten entries rounded up to a minute each.

/// A time entry's `time_spent` in minutes, rounded to the nearest minute (half up): see
/// [`parse_time_spent_seconds`]. For one entry; a sum of entries adds their seconds instead.
pub fn parse_time_spent(raw: &str) -> Result<i64, String> {
    parse_time_spent_seconds(raw).map(minutes_of_seconds)
}

/// Seconds rounded to the nearest minute, half up (30 seconds are a minute, 29 are none).
pub fn minutes_of_seconds(seconds: i64) -> i64 {
    (seconds + 30).div_euclid(60)
}

/// Parses a time entry's `time_spent` into seconds: `h:mm`, `hh:mm`, `hhh:mm` (any number of hour
/// digits up to 5) and `hh:mm:ss`. Minutes and seconds must be two digits below 60. Everything
/// else (`abc`, `-1:00`, `99999:99`, empty) is an error that quotes the value.
pub fn parse_time_spent_seconds(raw: &str) -> Result<i64, String> {
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
    Ok((hours * 60 + minutes) * 60 + seconds)
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
    fn seconds_are_summed_before_they_are_rounded() {
        assert_eq!(parse_time_spent_seconds("00:00:30"), Ok(30));
        assert_eq!(parse_time_spent_seconds("01:02:03"), Ok(3723));
        assert_eq!(parse_time_spent_seconds("1:05"), Ok(3900));
        // Ten 30-second entries: each alone rounds to a minute, together they are 5 minutes.
        let seconds: i64 = (0..10)
            .map(|_| parse_time_spent_seconds("00:00:30").unwrap())
            .sum();
        assert_eq!(minutes_of_seconds(seconds), 5);
        assert_eq!(parse_time_spent("00:00:30"), Ok(1));
        for (seconds, minutes) in [(0, 0), (29, 0), (30, 1), (89, 1), (90, 2), (3600, 60)] {
            assert_eq!(minutes_of_seconds(seconds), minutes, "{seconds}");
        }
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
