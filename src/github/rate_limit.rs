//! When to retry a GitHub API response, and after how long.
//!
//! GitHub's rules ("Rate limits for the REST API", "Best practices for using the REST API"):
//! on a 403 or 429 for exceeding a rate limit, wait for `retry-after` seconds when it is
//! given; otherwise, when `x-ratelimit-remaining` is 0, wait until `x-ratelimit-reset` (Unix
//! seconds); otherwise wait at least a minute, longer each time. Server errors are retried
//! with exponential backoff. Everything else goes back to the caller.
//!
//! [`RetryPolicy::verdict`] is pure: the caller passes the clock and the retry count, and does
//! the waiting.

use std::fmt;
use std::time::Duration;

use http::HeaderMap;

/// How persistent to be with GitHub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How many retries of one request at most; the response after the last one is final.
    pub max_retries: u32,
    /// The wait before the first retry after a server error; doubled for each later one.
    pub server_error_base: Duration,
    /// The wait before the first retry after a secondary rate limit without `retry-after`;
    /// doubled for each later one. GitHub asks for at least a minute.
    pub secondary_limit_base: Duration,
    /// The longest wait worth doing; a response that asks for more is given up on.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    /// 5 retries, server errors from 1 s, secondary rate limits from 60 s, waits up to 1 h
    /// (a primary rate limit resets within an hour).
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            server_error_base: Duration::from_secs(1),
            secondary_limit_base: Duration::from_secs(60),
            max_wait: Duration::from_secs(60 * 60),
        }
    }
}

/// What to do with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Hand the response to the caller, success or not: it is not one to retry.
    Accept,
    /// Send the request again after `wait`.
    RetryAfter {
        /// How long to wait before retrying.
        wait: Duration,
        /// Why the response is retried.
        reason: RetryReason,
    },
    /// The response would be retried, but the retries are used up or the wait it asks for is
    /// longer than [`RetryPolicy::max_wait`]: fail with `reason`.
    GiveUp {
        /// Why the response would have been retried.
        reason: RetryReason,
    },
}

/// Why a response is retried (or would have been).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryReason {
    /// The hourly request quota is used up (`x-ratelimit-remaining: 0`).
    PrimaryRateLimit,
    /// GitHub's secondary rate limit (too many requests at once or too fast): a 429, or a 403
    /// whose body says "rate limit".
    SecondaryRateLimit,
    /// A rate limit response with a `retry-after` header.
    RetryAfterHeader,
    /// A 500, 502, 503 or 504.
    ServerError(u16),
}

impl fmt::Display for RetryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryReason::PrimaryRateLimit => {
                f.write_str("GitHub's API rate limit is used up until it resets")
            }
            RetryReason::SecondaryRateLimit => f.write_str("GitHub's secondary rate limit was hit"),
            RetryReason::RetryAfterHeader => {
                f.write_str("GitHub is rate limiting and asked to retry later (retry-after)")
            }
            RetryReason::ServerError(status) => {
                write!(f, "GitHub answered with server error {status}")
            }
        }
    }
}

impl RetryPolicy {
    /// Decides what to do with a response of `status`, `headers` and `body` to a request that
    /// has already been retried `retries_so_far` times, at `now_unix` (Unix seconds).
    ///
    /// For a 403 or 429, in this order:
    /// 1. a numeric `retry-after` (seconds) is waited for exactly;
    /// 2. `x-ratelimit-remaining: 0` with a numeric `x-ratelimit-reset` waits until one second
    ///    after the reset (one second when the reset is past);
    /// 3. a 429, or a 403 whose body mentions "rate limit" (any case), is a secondary rate
    ///    limit: `secondary_limit_base × 2^retries_so_far`;
    /// 4. any other 403 is a permission error and is accepted, never retried.
    ///
    /// A 500, 502, 503 or 504 waits `server_error_base × 2^retries_so_far`. Every other status
    /// is accepted. A response that would be retried is given up on when `retries_so_far` has
    /// reached `max_retries` or the wait is over `max_wait`.
    ///
    /// Header values that are not plain decimal numbers are treated as absent; numbers too
    /// large for a `u64` count as the largest one (and so give up on the wait). Nothing
    /// overflows, whatever the input.
    pub fn verdict(
        &self,
        status: u16,
        headers: &HeaderMap,
        body: &[u8],
        retries_so_far: u32,
        now_unix: u64,
    ) -> Verdict {
        let (wait, reason) = match status {
            403 | 429 => {
                if let Some(seconds) = header_number(headers, "retry-after") {
                    (Duration::from_secs(seconds), RetryReason::RetryAfterHeader)
                } else if let (Some(0), Some(reset)) = (
                    header_number(headers, "x-ratelimit-remaining"),
                    header_number(headers, "x-ratelimit-reset"),
                ) {
                    // The second added rounds up: the limit resets during the reset second.
                    let seconds = reset.saturating_sub(now_unix).saturating_add(1);
                    (Duration::from_secs(seconds), RetryReason::PrimaryRateLimit)
                } else if status == 429 || mentions_rate_limit(body) {
                    (
                        doubled(self.secondary_limit_base, retries_so_far),
                        RetryReason::SecondaryRateLimit,
                    )
                } else {
                    return Verdict::Accept;
                }
            }
            500 | 502 | 503 | 504 => (
                doubled(self.server_error_base, retries_so_far),
                RetryReason::ServerError(status),
            ),
            _ => return Verdict::Accept,
        };
        if retries_so_far >= self.max_retries || wait > self.max_wait {
            Verdict::GiveUp { reason }
        } else {
            Verdict::RetryAfter { wait, reason }
        }
    }
}

/// `base × 2^times`, saturating at `Duration::MAX`.
fn doubled(base: Duration, times: u32) -> Duration {
    let factor = 1u32.checked_shl(times).unwrap_or(u32::MAX);
    base.saturating_mul(factor)
}

/// The header (its first value, if repeated) as a decimal number of seconds or requests, or
/// `None` when it is missing or anything but digits (surrounding whitespace aside). A number
/// too large for a `u64` gives `u64::MAX`: it is still a "very long time", not garbage.
fn header_number(headers: &HeaderMap, name: &str) -> Option<u64> {
    let text = headers.get(name)?.to_str().ok()?.trim();
    // `u64::from_str` would also take a leading `+`; a header value is digits only.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u64::MAX))
}

/// Whether the body says "rate limit", in any case, as GitHub's messages for both limits do
/// ("API rate limit exceeded…", "You have exceeded a secondary rate limit…").
fn mentions_rate_limit(body: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"rate limit";
    body.windows(NEEDLE.len())
        .any(|window| window.eq_ignore_ascii_case(NEEDLE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const NOW: u64 = 1_700_000_000;
    const SECONDARY_BODY: &[u8] = br#"{"message":"You have exceeded a secondary rate limit and have been temporarily blocked from content creation. Please retry your request again later.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits","status":"403"}"#;
    const PRIMARY_BODY: &[u8] = br#"{"message":"API rate limit exceeded for installation ID 123.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api","status":"403"}"#;
    const FORBIDDEN_BODY: &[u8] = br#"{"message":"Resource not accessible by integration","documentation_url":"https://docs.github.com/rest","status":"403"}"#;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn policy() -> RetryPolicy {
        RetryPolicy::default()
    }

    fn retry(seconds: u64, reason: RetryReason) -> Verdict {
        Verdict::RetryAfter {
            wait: Duration::from_secs(seconds),
            reason,
        }
    }

    #[test]
    fn default_policy() {
        assert_eq!(
            policy(),
            RetryPolicy {
                max_retries: 5,
                server_error_base: Duration::from_secs(1),
                secondary_limit_base: Duration::from_secs(60),
                max_wait: Duration::from_secs(3600),
            }
        );
    }

    #[test]
    fn successes_and_client_errors_are_accepted() {
        for status in [
            200, 201, 204, 301, 304, 400, 401, 404, 409, 410, 422, 451, 501, 505, 599, 0, 999,
        ] {
            assert_eq!(
                policy().verdict(status, &HeaderMap::new(), b"", 0, NOW),
                Verdict::Accept,
                "{status}"
            );
        }
        // Rate limit headers on an ordinary response change nothing.
        let limited = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1700000100"),
            ("retry-after", "30"),
        ]);
        for status in [200, 404, 422] {
            assert_eq!(
                policy().verdict(status, &limited, PRIMARY_BODY, 0, NOW),
                Verdict::Accept,
                "{status}"
            );
        }
    }

    #[test]
    fn retry_after_is_honoured_on_403_and_429() {
        for status in [403, 429] {
            assert_eq!(
                policy().verdict(status, &headers(&[("retry-after", "30")]), b"", 0, NOW),
                retry(30, RetryReason::RetryAfterHeader),
                "{status}"
            );
        }
        // Exactly as asked, even zero, and not doubled on later retries.
        assert_eq!(
            policy().verdict(429, &headers(&[("retry-after", "0")]), b"", 3, NOW),
            retry(0, RetryReason::RetryAfterHeader)
        );
        assert_eq!(
            policy().verdict(403, &headers(&[("Retry-After", " 120 ")]), b"", 4, NOW),
            retry(120, RetryReason::RetryAfterHeader)
        );
    }

    #[test]
    fn retry_after_wins_over_the_reset_time() {
        let both = headers(&[
            ("retry-after", "5"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1700000600"),
        ]);
        assert_eq!(
            policy().verdict(403, &both, PRIMARY_BODY, 0, NOW),
            retry(5, RetryReason::RetryAfterHeader)
        );
    }

    #[test]
    fn retry_after_is_ignored_on_server_errors() {
        // The product rule: server errors back off exponentially.
        assert_eq!(
            policy().verdict(503, &headers(&[("retry-after", "600")]), b"", 1, NOW),
            retry(2, RetryReason::ServerError(503))
        );
    }

    #[test]
    fn primary_limit_waits_until_the_reset() {
        let limited = |reset: &str| {
            headers(&[
                ("x-ratelimit-limit", "5000"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-used", "5000"),
                ("x-ratelimit-reset", reset),
            ])
        };
        for status in [403, 429] {
            assert_eq!(
                policy().verdict(status, &limited("1700000100"), PRIMARY_BODY, 0, NOW),
                retry(101, RetryReason::PrimaryRateLimit),
                "{status}"
            );
        }
        // The wait does not grow with the retries: the reset time is what matters.
        assert_eq!(
            policy().verdict(403, &limited("1700000100"), b"", 4, NOW),
            retry(101, RetryReason::PrimaryRateLimit)
        );
        // A reset now or in the past (clock skew) waits one second.
        for reset in ["1700000000", "1699999000", "0"] {
            assert_eq!(
                policy().verdict(403, &limited(reset), b"", 0, NOW),
                retry(1, RetryReason::PrimaryRateLimit),
                "{reset}"
            );
        }
        // An hour away is the most the default policy waits.
        assert_eq!(
            policy().verdict(403, &limited("1700003599"), b"", 0, NOW),
            retry(3600, RetryReason::PrimaryRateLimit)
        );
        assert_eq!(
            policy().verdict(403, &limited("1700003600"), b"", 0, NOW),
            Verdict::GiveUp {
                reason: RetryReason::PrimaryRateLimit
            }
        );
    }

    #[test]
    fn remaining_requests_or_no_reset_is_not_a_primary_limit() {
        // Requests left: the 403 is a permission error.
        let left = headers(&[
            ("x-ratelimit-remaining", "4999"),
            ("x-ratelimit-reset", "1700000100"),
        ]);
        assert_eq!(
            policy().verdict(403, &left, FORBIDDEN_BODY, 0, NOW),
            Verdict::Accept
        );
        // Requests left but the body says rate limit: secondary.
        assert_eq!(
            policy().verdict(403, &left, SECONDARY_BODY, 0, NOW),
            retry(60, RetryReason::SecondaryRateLimit)
        );
        // No reset time: fall back to the secondary rule.
        let no_reset = headers(&[("x-ratelimit-remaining", "0")]);
        assert_eq!(
            policy().verdict(403, &no_reset, PRIMARY_BODY, 0, NOW),
            retry(60, RetryReason::SecondaryRateLimit)
        );
        assert_eq!(
            policy().verdict(403, &no_reset, FORBIDDEN_BODY, 0, NOW),
            Verdict::Accept
        );
        // A reset time alone is not enough either.
        let reset_only = headers(&[("x-ratelimit-reset", "1700000100")]);
        assert_eq!(
            policy().verdict(403, &reset_only, FORBIDDEN_BODY, 0, NOW),
            Verdict::Accept
        );
    }

    #[test]
    fn secondary_limit_backs_off_from_a_minute() {
        let expected = [60, 120, 240, 480, 960];
        for (retries, seconds) in expected.into_iter().enumerate() {
            assert_eq!(
                policy().verdict(403, &HeaderMap::new(), SECONDARY_BODY, retries as u32, NOW),
                retry(seconds, RetryReason::SecondaryRateLimit),
                "retry {retries}"
            );
            assert_eq!(
                policy().verdict(429, &HeaderMap::new(), b"", retries as u32, NOW),
                retry(seconds, RetryReason::SecondaryRateLimit),
                "429, retry {retries}"
            );
        }
    }

    #[test]
    fn rate_limit_in_the_body_matches_in_any_case() {
        for body in [
            &b"rate limit"[..],
            b"RATE LIMIT",
            b"API Rate Limit exceeded",
            PRIMARY_BODY,
            SECONDARY_BODY,
        ] {
            assert_eq!(
                policy().verdict(403, &HeaderMap::new(), body, 0, NOW),
                retry(60, RetryReason::SecondaryRateLimit),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        for body in [
            &b""[..],
            b"rate-limit",
            b"ratelimit",
            b"rate limi",
            b"rate\nlimit",
            FORBIDDEN_BODY,
            b"\xff\xfe not utf-8",
        ] {
            assert_eq!(
                policy().verdict(403, &HeaderMap::new(), body, 0, NOW),
                Verdict::Accept,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // Not UTF-8 around it does not matter.
        assert_eq!(
            policy().verdict(403, &HeaderMap::new(), b"\xff rate limit \xfe", 0, NOW),
            retry(60, RetryReason::SecondaryRateLimit)
        );
    }

    #[test]
    fn a_plain_403_is_a_permission_error() {
        assert_eq!(
            policy().verdict(403, &HeaderMap::new(), FORBIDDEN_BODY, 0, NOW),
            Verdict::Accept
        );
        // With the usual rate limit headers of a response that is not limited.
        let usual = headers(&[
            ("x-ratelimit-limit", "5000"),
            ("x-ratelimit-remaining", "4321"),
            ("x-ratelimit-reset", "1700000100"),
        ]);
        assert_eq!(
            policy().verdict(403, &usual, FORBIDDEN_BODY, 0, NOW),
            Verdict::Accept
        );
    }

    #[test]
    fn server_errors_back_off_exponentially() {
        for status in [500, 502, 503, 504] {
            for (retries, seconds) in [1, 2, 4, 8, 16].into_iter().enumerate() {
                assert_eq!(
                    policy().verdict(status, &HeaderMap::new(), b"", retries as u32, NOW),
                    retry(seconds, RetryReason::ServerError(status)),
                    "{status}, retry {retries}"
                );
            }
        }
    }

    #[test]
    fn gives_up_when_the_retries_are_used_up() {
        let cases: [(u16, HeaderMap, &[u8], RetryReason); 5] = [
            (500, HeaderMap::new(), b"", RetryReason::ServerError(500)),
            (429, HeaderMap::new(), b"", RetryReason::SecondaryRateLimit),
            (
                403,
                HeaderMap::new(),
                SECONDARY_BODY,
                RetryReason::SecondaryRateLimit,
            ),
            (
                403,
                headers(&[("retry-after", "1")]),
                b"",
                RetryReason::RetryAfterHeader,
            ),
            (
                403,
                headers(&[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "1700000001"),
                ]),
                b"",
                RetryReason::PrimaryRateLimit,
            ),
        ];
        for (status, map, body, reason) in cases {
            for retries in [5, 6, 100, u32::MAX] {
                assert_eq!(
                    policy().verdict(status, &map, body, retries, NOW),
                    Verdict::GiveUp { reason },
                    "{status}, retry {retries}"
                );
            }
            // One retry left: retried.
            assert!(matches!(
                policy().verdict(status, &map, body, 4, NOW),
                Verdict::RetryAfter { .. }
            ));
        }
        // A response that is accepted stays accepted however many retries came before.
        assert_eq!(
            policy().verdict(404, &HeaderMap::new(), b"", u32::MAX, NOW),
            Verdict::Accept
        );
        // No retries at all.
        let never = RetryPolicy {
            max_retries: 0,
            ..policy()
        };
        assert_eq!(
            never.verdict(502, &HeaderMap::new(), b"", 0, NOW),
            Verdict::GiveUp {
                reason: RetryReason::ServerError(502)
            }
        );
    }

    #[test]
    fn gives_up_when_the_wait_is_too_long() {
        assert_eq!(
            policy().verdict(429, &headers(&[("retry-after", "3600")]), b"", 0, NOW),
            retry(3600, RetryReason::RetryAfterHeader)
        );
        assert_eq!(
            policy().verdict(429, &headers(&[("retry-after", "3601")]), b"", 0, NOW),
            Verdict::GiveUp {
                reason: RetryReason::RetryAfterHeader
            }
        );
        // Backoff past the cap: 60 s × 2^6 = 64 min.
        let patient = RetryPolicy {
            max_retries: 100,
            ..policy()
        };
        assert_eq!(
            patient.verdict(429, &HeaderMap::new(), b"", 5, NOW),
            retry(1920, RetryReason::SecondaryRateLimit)
        );
        assert_eq!(
            patient.verdict(429, &HeaderMap::new(), b"", 6, NOW),
            Verdict::GiveUp {
                reason: RetryReason::SecondaryRateLimit
            }
        );
    }

    #[test]
    fn huge_numbers_do_not_overflow() {
        let unlimited = RetryPolicy {
            max_retries: u32::MAX,
            max_wait: Duration::MAX,
            ..policy()
        };
        // The doubling factor saturates at u32::MAX instead of wrapping to 0 or panicking.
        for (retries, seconds) in [
            (31, 1 << 31),
            (32, u64::from(u32::MAX)),
            (64, u64::from(u32::MAX)),
            (1000, u64::from(u32::MAX)),
            (u32::MAX - 1, u64::from(u32::MAX)),
        ] {
            assert_eq!(
                unlimited.verdict(503, &HeaderMap::new(), b"", retries, NOW),
                retry(seconds, RetryReason::ServerError(503)),
                "{retries}"
            );
            let Verdict::RetryAfter { wait, .. } =
                unlimited.verdict(429, &HeaderMap::new(), b"", retries, NOW)
            else {
                panic!("retry {retries}");
            };
            assert!(wait >= Duration::from_secs(60 << 31), "{retries}: {wait:?}");
        }
        // A huge base saturates at Duration::MAX.
        let huge_base = RetryPolicy {
            server_error_base: Duration::MAX,
            ..unlimited
        };
        assert_eq!(
            huge_base.verdict(500, &HeaderMap::new(), b"", 3, NOW),
            retry_duration(Duration::MAX, RetryReason::ServerError(500))
        );
        // Header values at and beyond u64::MAX.
        let max = u64::MAX.to_string();
        let beyond = "9".repeat(100);
        for value in [max.as_str(), beyond.as_str()] {
            assert_eq!(
                policy().verdict(429, &headers(&[("retry-after", value)]), b"", 0, NOW),
                Verdict::GiveUp {
                    reason: RetryReason::RetryAfterHeader
                },
                "{value}"
            );
            assert_eq!(
                policy().verdict(
                    403,
                    &headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", value)]),
                    b"",
                    0,
                    NOW
                ),
                Verdict::GiveUp {
                    reason: RetryReason::PrimaryRateLimit
                },
                "{value}"
            );
            assert_eq!(
                unlimited.verdict(
                    403,
                    &headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", value)]),
                    b"",
                    0,
                    0
                ),
                retry(u64::MAX, RetryReason::PrimaryRateLimit),
                "{value}"
            );
        }
        // A clock far in the future.
        assert_eq!(
            policy().verdict(
                403,
                &headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "5")]),
                b"",
                0,
                u64::MAX
            ),
            retry(1, RetryReason::PrimaryRateLimit)
        );
        // So many requests left that the count does not fit: not zero.
        assert_eq!(
            policy().verdict(
                403,
                &headers(&[
                    ("x-ratelimit-remaining", &beyond),
                    ("x-ratelimit-reset", "5")
                ]),
                FORBIDDEN_BODY,
                0,
                NOW
            ),
            Verdict::Accept
        );
    }

    fn retry_duration(wait: Duration, reason: RetryReason) -> Verdict {
        Verdict::RetryAfter { wait, reason }
    }

    #[test]
    fn malformed_headers_count_as_absent() {
        for bad in [
            "",
            " ",
            "-1",
            "+30",
            "1.5",
            "30s",
            "0x10",
            "1e3",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "3 0",
            "٣",
        ] {
            // A malformed retry-after falls through to the next rule.
            assert_eq!(
                policy().verdict(429, &headers(&[("retry-after", bad)]), b"", 0, NOW),
                retry(60, RetryReason::SecondaryRateLimit),
                "retry-after {bad:?}"
            );
            assert_eq!(
                policy().verdict(
                    403,
                    &headers(&[("retry-after", bad)]),
                    FORBIDDEN_BODY,
                    0,
                    NOW
                ),
                Verdict::Accept,
                "retry-after {bad:?}"
            );
            // A malformed remaining or reset is not a primary limit.
            for pairs in [
                [
                    ("x-ratelimit-remaining", bad),
                    ("x-ratelimit-reset", "1700000100"),
                ],
                [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", bad)],
            ] {
                assert_eq!(
                    policy().verdict(403, &headers(&pairs), FORBIDDEN_BODY, 0, NOW),
                    Verdict::Accept,
                    "{pairs:?}"
                );
                assert_eq!(
                    policy().verdict(429, &headers(&pairs), b"", 0, NOW),
                    retry(60, RetryReason::SecondaryRateLimit),
                    "{pairs:?}"
                );
            }
        }
    }

    #[test]
    fn header_values_that_are_not_text_count_as_absent() {
        let mut map = HeaderMap::new();
        map.insert("retry-after", HeaderValue::from_bytes(b"3\xff0").unwrap());
        assert_eq!(
            policy().verdict(429, &map, b"", 0, NOW),
            retry(60, RetryReason::SecondaryRateLimit)
        );
    }

    #[test]
    fn the_first_of_repeated_headers_is_read() {
        let map = headers(&[("retry-after", "7"), ("retry-after", "9")]);
        assert_eq!(
            policy().verdict(429, &map, b"", 0, NOW),
            retry(7, RetryReason::RetryAfterHeader)
        );
    }

    #[test]
    fn a_large_body_is_scanned() {
        let mut body = vec![b'x'; 1 << 20];
        body.extend_from_slice(b"Rate Limit");
        assert_eq!(
            policy().verdict(403, &HeaderMap::new(), &body, 0, NOW),
            retry(60, RetryReason::SecondaryRateLimit)
        );
    }

    #[test]
    fn reasons_read_well() {
        assert_eq!(
            RetryReason::ServerError(502).to_string(),
            "GitHub answered with server error 502"
        );
        for reason in [
            RetryReason::PrimaryRateLimit,
            RetryReason::SecondaryRateLimit,
            RetryReason::RetryAfterHeader,
        ] {
            assert!(reason.to_string().contains("rate limit"), "{reason}");
        }
    }
}
