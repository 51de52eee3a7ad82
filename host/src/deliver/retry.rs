//! When to try a failed delivery again, and when to give up.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// The retry budget of an endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// No attempt is started later than this after the first.
    pub max_elapsed: Duration,
    /// Delay before attempt n+1 (n = 0 is the first attempt); the last one repeats.
    pub schedule: Vec<Duration>,
    /// Spread of each delay, as a fraction of it either way (0.2 = ±20 %).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// The Standard Webhooks schedule: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
    fn default() -> Self {
        Self {
            max_attempts: 8,
            max_elapsed: Duration::from_secs(36 * 3600),
            schedule: [0, 5, 300, 1800, 7200, 18000, 36000, 36000]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// The wait before the next attempt after `attempts` have failed, or `None` when the budget
    /// is spent. `elapsed` is the time since the first attempt; `retry_after` is what the
    /// endpoint asked for (it is honoured, as a minimum).
    pub(crate) fn next_delay(
        &self,
        attempts: u32,
        elapsed: Duration,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        if attempts >= self.max_attempts {
            return None;
        }
        let base = self
            .schedule
            .get(attempts as usize)
            .or(self.schedule.last())
            .copied()
            .unwrap_or_default();
        let spread = 1.0 + self.jitter * (2.0 * rand::random::<f64>() - 1.0);
        let jittered = Duration::try_from_secs_f64(base.as_secs_f64() * spread).unwrap_or(base);
        let delay = jittered.max(retry_after.unwrap_or_default());
        // Checked: an absurd wait (or elapsed time) is beyond any budget, not an overflow.
        let resume = elapsed.checked_add(delay)?;
        (resume <= self.max_elapsed).then_some(delay)
    }
}

/// Reads `Retry-After`: seconds, or an HTTP date. Seconds beyond `u64` are clamped to its
/// maximum, a wait beyond any retry budget.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(text.parse().unwrap_or(u64::MAX)));
    }
    let when = httpdate::parse_http_date(text).ok()?;
    Some(when.duration_since(SystemTime::now()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(schedule: &[u64], max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            max_elapsed: Duration::from_secs(100),
            schedule: schedule.iter().map(|s| Duration::from_secs(*s)).collect(),
            jitter: 0.0,
        }
    }

    #[test]
    fn follows_the_schedule_then_repeats_its_last_step() {
        let p = policy(&[0, 5, 10], 5);
        let next = |n| p.next_delay(n, Duration::ZERO, None);
        assert_eq!(next(1), Some(Duration::from_secs(5)));
        assert_eq!(next(2), Some(Duration::from_secs(10)));
        assert_eq!(next(4), Some(Duration::from_secs(10)));
        assert_eq!(next(5), None, "budget spent");
    }

    #[test]
    fn gives_up_past_max_elapsed_and_honours_retry_after() {
        let p = policy(&[0, 50], 10);
        assert_eq!(p.next_delay(1, Duration::from_secs(60), None), None);
        assert_eq!(
            p.next_delay(1, Duration::ZERO, Some(Duration::from_secs(70))),
            Some(Duration::from_secs(70))
        );
    }

    #[test]
    fn jitter_stays_within_its_spread() {
        let p = RetryPolicy {
            jitter: 0.2,
            ..policy(&[0, 10], 3)
        };
        let delays: Vec<f64> = (0..200)
            .map(|_| p.next_delay(1, Duration::ZERO, None).unwrap().as_secs_f64())
            .collect();
        for d in &delays {
            assert!((8.0..=12.0).contains(d), "{d}");
        }
        assert!(
            delays.iter().any(|d| !(9.0..=11.0).contains(d)),
            "0.2 spreads by up to 20% either way, not 10%"
        );
    }

    #[test]
    fn parses_retry_after_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        let later = SystemTime::now() + Duration::from_secs(120);
        headers.insert(RETRY_AFTER, httpdate::fmt_http_date(later).parse().unwrap());
        let got = retry_after(&headers).unwrap().as_secs();
        assert!((118..=120).contains(&got), "{got}");
    }

    #[test]
    fn a_huge_retry_after_is_clamped_not_a_panic() {
        let mut headers = HeaderMap::new();
        for huge in ["99999999999999999999", "18446744073709551615"] {
            headers.insert(RETRY_AFTER, huge.parse().unwrap());
            let got = retry_after(&headers).expect("clamped, not ignored");
            assert!(got >= Duration::from_secs(u64::MAX / 2), "{huge}: {got:?}");
        }
    }

    #[test]
    fn a_huge_retry_after_spends_the_budget() {
        let p = policy(&[0, 5], 10);
        let huge = Some(Duration::from_secs(u64::MAX));
        assert_eq!(p.next_delay(1, Duration::from_secs(1), huge), None);
        assert_eq!(p.next_delay(1, Duration::ZERO, Some(Duration::MAX)), None);
        assert_eq!(p.next_delay(1, Duration::MAX, None), None);
    }

    #[test]
    fn a_retry_after_date_far_ahead_spends_the_budget() {
        let mut headers = HeaderMap::new();
        headers.insert(
            RETRY_AFTER,
            "Fri, 31 Dec 9999 23:59:59 GMT".parse().unwrap(),
        );
        let wait = retry_after(&headers);
        assert!(wait.is_some_and(|w| w > Duration::from_secs(100 * 365 * 86400)));
        let p = policy(&[0, 5], 10);
        assert_eq!(p.next_delay(1, Duration::from_secs(1), wait), None);
    }
}
