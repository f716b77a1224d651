//! Retry decisions and backoff: a pure function over (what happened, attempt) plus the delays.
//!
//! Nothing here sleeps or does I/O; `client` asks [`decide`] what to do after each attempt and
//! does the waiting itself: a 429's pause goes to the shared [`super::limiter::Limiter`], so
//! every request of the run waits it out before its next send, while a backoff delay is slept
//! by the failing request alone (it counts in the run's `backoff_ms`, budget waits do not).
//! Rules (API reference §4):
//! 429 → retry after `Retry-After` (integer seconds or an HTTP date; absent → one rate window);
//! the server is not trusted with the length of the pause: a value that is not a number of
//! seconds or a date (`abc`, `-5`, `NaN`) counts as absent, and anything longer than
//! [`MAX_RATE_LIMIT_WINDOWS`] rate windows (`4294967295`, `1e20`, a date in the year 9999) is cut
//! to that, so a broken header costs at most a few minutes, never a sleep of decades or a panic;
//! 5xx, timeouts, dropped connections and broken or truncated bodies → capped exponential
//! backoff with decorrelated jitter; every other 4xx → give up at once.

use std::time::{Duration, SystemTime};

use rand::Rng;

/// Limits of the retry loop.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts for transient failures (5xx, transport, broken bodies), including the first.
    pub max_attempts: u32,
    /// Attempts when the only failures were 429s; a storm can last a few windows.
    pub max_rate_limited_attempts: u32,
    /// First backoff delay.
    pub base_delay: Duration,
    /// No backoff delay exceeds this.
    pub max_delay: Duration,
    /// Used when a 429 has no usable `Retry-After`: the length of the API's rate window.
    pub rate_window: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            max_rate_limited_attempts: 20,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(20),
            rate_window: Duration::from_secs(60),
        }
    }
}

/// What one attempt produced, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt<'a> {
    /// The server answered with a non-success status.
    Status {
        /// The HTTP status.
        status: u16,
        /// The `Retry-After` header as sent (integer seconds or an HTTP date), if any.
        retry_after: Option<&'a str>,
    },
    /// No usable response: connect error, reset, timeout.
    Transport,
    /// A 2xx whose body broke off or did not decode (truncated JSON, HTML instead of JSON).
    BrokenBody,
}

/// The longest 429 pause, in rate windows (3 minutes on Freshservice). A real `Retry-After`
/// never exceeds one window; a longer one is a leftover of an hourly limit or garbage.
pub const MAX_RATE_LIMIT_WINDOWS: u32 = 3;

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Wait `after`, then try again. `rate_limited` means every worker must wait (a 429).
    Retry {
        /// How long to sleep first.
        after: Duration,
        /// A 429: every worker must wait, not only this one.
        rate_limited: bool,
    },
    /// Stop and report the failure.
    GiveUp,
}

/// Decides after attempt number `attempt` (1-based). `transient_failures` counts the non-429
/// failures so far (including this one), `prev_delay` is the last backoff slept.
pub fn decide(
    policy: &RetryPolicy,
    outcome: Attempt<'_>,
    attempt: u32,
    transient_failures: u32,
    prev_delay: Duration,
    now: SystemTime,
    rng: &mut impl Rng,
) -> Decision {
    match outcome {
        Attempt::Status {
            status: 429,
            retry_after,
        } => {
            if attempt >= policy.max_rate_limited_attempts {
                return Decision::GiveUp;
            }
            let after = retry_after
                .and_then(|v| parse_retry_after(v, now))
                .unwrap_or(policy.rate_window);
            // An absurd value (an hourly-limit leftover like 1521 s) is capped at a few windows.
            let after = after.min(policy.rate_window.saturating_mul(MAX_RATE_LIMIT_WINDOWS));
            Decision::Retry {
                after,
                rate_limited: true,
            }
        }
        Attempt::Status { status, .. } if !(500..=599).contains(&status) => Decision::GiveUp,
        _ if transient_failures >= policy.max_attempts => Decision::GiveUp,
        _ => Decision::Retry {
            after: backoff(policy, prev_delay, rng),
            rate_limited: false,
        },
    }
}

/// Decorrelated jitter: uniform in `[base, 3 × previous]`, capped.
pub fn backoff(policy: &RetryPolicy, prev_delay: Duration, rng: &mut impl Rng) -> Duration {
    let base = policy.base_delay.as_secs_f64();
    let upper = (prev_delay.as_secs_f64() * 3.0).max(base * 2.0);
    let secs = rng
        .gen_range(base..=upper)
        .min(policy.max_delay.as_secs_f64());
    Duration::try_from_secs_f64(secs).unwrap_or(policy.max_delay)
}

/// `Retry-After` as integer (or fractional) seconds or as an HTTP date. `None` for anything
/// else, negative numbers and NaN included; a number too large for a [`Duration`] saturates
/// (the caller caps it).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        // `inf` parses too; NaN and negatives fail `>= 0`.
        return (secs >= 0.0).then(|| Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    fn run(outcome: Attempt<'_>, attempt: u32, transient: u32) -> Decision {
        let mut rng = StdRng::seed_from_u64(1);
        decide(
            &RetryPolicy::default(),
            outcome,
            attempt,
            transient,
            Duration::from_millis(200),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000),
            &mut rng,
        )
    }

    #[test]
    fn client_errors_are_never_retried() {
        for status in [400, 401, 403, 404, 405, 409, 415] {
            assert_eq!(
                run(
                    Attempt::Status {
                        status,
                        retry_after: None
                    },
                    1,
                    1
                ),
                Decision::GiveUp
            );
        }
    }

    #[test]
    fn server_errors_back_off_until_the_cap() {
        for status in [500, 502, 503, 504] {
            let d = run(
                Attempt::Status {
                    status,
                    retry_after: None,
                },
                1,
                1,
            );
            assert!(
                matches!(
                    d,
                    Decision::Retry {
                        rate_limited: false,
                        ..
                    }
                ),
                "{status}: {d:?}"
            );
        }
        assert!(matches!(
            run(Attempt::Transport, 2, 2),
            Decision::Retry { .. }
        ));
        assert!(matches!(
            run(Attempt::BrokenBody, 3, 3),
            Decision::Retry { .. }
        ));
        assert_eq!(run(Attempt::Transport, 6, 6), Decision::GiveUp);
    }

    #[test]
    fn rate_limits_wait_for_retry_after() {
        let d = run(
            Attempt::Status {
                status: 429,
                retry_after: Some("7"),
            },
            1,
            0,
        );
        assert_eq!(
            d,
            Decision::Retry {
                after: Duration::from_secs(7),
                rate_limited: true
            }
        );
        // No header: one rate window.
        let d = run(
            Attempt::Status {
                status: 429,
                retry_after: None,
            },
            1,
            0,
        );
        assert_eq!(
            d,
            Decision::Retry {
                after: Duration::from_secs(60),
                rate_limited: true
            }
        );
        // Absurd values are capped.
        let d = run(
            Attempt::Status {
                status: 429,
                retry_after: Some("1521"),
            },
            1,
            0,
        );
        assert_eq!(
            d,
            Decision::Retry {
                after: Duration::from_secs(180),
                rate_limited: true
            }
        );
        // 429s do not use up the transient budget but are bounded too.
        assert!(matches!(
            run(
                Attempt::Status {
                    status: 429,
                    retry_after: None
                },
                10,
                5
            ),
            Decision::Retry { .. }
        ));
        assert_eq!(
            run(
                Attempt::Status {
                    status: 429,
                    retry_after: None
                },
                20,
                0
            ),
            Decision::GiveUp
        );
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after(" 0.5 ", now),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:30 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn absurd_retry_after_values_never_panic_or_stall() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        for (value, expected) in [
            // Too long: three windows at most.
            ("4294967295", Duration::from_secs(180)),
            ("1e20", Duration::from_secs(180)),
            ("1e400", Duration::from_secs(180)),
            ("inf", Duration::from_secs(180)),
            ("18446744073709551616", Duration::from_secs(180)),
            ("Fri, 31 Dec 9999 23:59:59 GMT", Duration::from_secs(180)),
            // Not a wait: as if absent, one window.
            ("-5", Duration::from_secs(60)),
            ("-1e20", Duration::from_secs(60)),
            ("NaN", Duration::from_secs(60)),
            ("abc", Duration::from_secs(60)),
            ("", Duration::from_secs(60)),
            ("Mon, 99 Foo 2025 99:99:99 GMT", Duration::from_secs(60)),
        ] {
            let d = run(
                Attempt::Status {
                    status: 429,
                    retry_after: Some(value),
                },
                1,
                0,
            );
            assert_eq!(
                d,
                Decision::Retry {
                    after: expected,
                    rate_limited: true
                },
                "Retry-After: {value}"
            );
        }
        assert_eq!(parse_retry_after("1e20", now), Some(Duration::MAX));
        assert_eq!(parse_retry_after("-5", now), None);
        // A policy with an enormous window does not overflow while capping.
        let policy = RetryPolicy {
            rate_window: Duration::MAX,
            ..RetryPolicy::default()
        };
        let mut rng = StdRng::seed_from_u64(1);
        let d = decide(
            &policy,
            Attempt::Status {
                status: 429,
                retry_after: Some("1e20"),
            },
            1,
            0,
            Duration::ZERO,
            now,
            &mut rng,
        );
        assert!(matches!(d, Decision::Retry { .. }));
    }

    #[test]
    fn backoff_stays_within_bounds() {
        let policy = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(7);
        let mut prev = policy.base_delay;
        for _ in 0..100 {
            let d = backoff(&policy, prev, &mut rng);
            assert!(d >= policy.base_delay && d <= policy.max_delay, "{d:?}");
            prev = d;
        }
    }
}
