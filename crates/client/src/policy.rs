//! When to reconnect.

use std::time::Duration;

/// How the client waits between connections.
///
/// The base wait is the *reconnection time* of the HTML specification: `initial_delay` until
/// the server sends a valid `retry:` field, then the latest such value. Each consecutive
/// failed attempt (one that did not reach a successful open) doubles the wait, up to
/// `max_delay`, or up to the server's `retry` if that is larger (the server's word is never
/// shortened); the doubling starts from at least 100 ms, so a server's `retry: 0` cannot
/// turn a failing host into a busy loop. A random extra of up to `jitter` times the wait is added, so that many clients
/// cut off together do not come back together. A successful open resets the doubling.
///
/// ```
/// use std::time::Duration;
/// use ssehub_client::ReconnectPolicy;
///
/// let policy = ReconnectPolicy {
///     initial_delay: Duration::from_secs(3),
///     max_delay: Duration::from_secs(30),
///     jitter: 0.0,
///     max_attempts: None,
/// };
/// let retry = Duration::from_secs(1); // the server sent `retry: 1000`
/// let waits: Vec<u64> = (0..7).map(|n| policy.delay(retry, n, 0.0).as_secs()).collect();
/// assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReconnectPolicy {
    /// The reconnection time until the server sends `retry:`. Default 3 s, as browsers use.
    pub initial_delay: Duration,
    /// The cap on exponential backoff after repeated failures. Default 60 s.
    pub max_delay: Duration,
    /// The largest random extra, as a fraction of the wait (0.0 to 1.0; out-of-range values
    /// are clamped). Default 0.25.
    pub jitter: f64,
    /// How many reconnection attempts in a row may fail before the stream gives up with
    /// [`ClientError::GaveUp`](crate::ClientError::GaveUp). `None` (the default) retries
    /// forever, as browsers do.
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            initial_delay: Duration::from_secs(3),
            max_delay: Duration::from_secs(60),
            jitter: 0.25,
            max_attempts: None,
        }
    }
}

impl ReconnectPolicy {
    /// The wait before a reconnection attempt: `retry` is the reconnection time in force,
    /// `failures` how many attempts in a row have already failed (0 for the first reconnect
    /// after a connection that opened), `random` a sample in `0.0..1.0` that picks the jitter.
    ///
    /// A pure function, so the schedule can be checked without a clock. Never panics.
    pub fn delay(&self, retry: Duration, failures: u32, random: f64) -> Duration {
        let cap = self.max_delay.max(retry);
        let base = if failures == 0 {
            retry
        } else {
            let factor = 1u32.checked_shl(failures).unwrap_or(u32::MAX);
            retry
                .max(MIN_BACKOFF_BASE)
                .checked_mul(factor)
                .unwrap_or(cap)
                .min(cap)
        };
        let fraction = unit(self.jitter) * unit(random);
        // `base` is at most ~u64::MAX ms, far below what `mul_f64` would overflow on; the `min`
        // guards against float rounding up.
        base.saturating_add(base.mul_f64(fraction).min(base))
    }
}

/// The smallest wait that backoff doubles from.
const MIN_BACKOFF_BASE: Duration = Duration::from_millis(100);

/// Clamps to `0.0..=1.0`, mapping NaN to 0.
fn unit(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: f64) -> ReconnectPolicy {
        ReconnectPolicy {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            jitter,
            max_attempts: None,
        }
    }

    #[test]
    fn doubles_from_the_reconnection_time_up_to_the_cap() {
        let p = policy(0.0);
        let ms: Vec<u128> = (0..10)
            .map(|n| p.delay(Duration::from_millis(100), n, 0.9).as_millis())
            .collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000]);
    }

    #[test]
    fn a_server_retry_above_the_cap_is_honoured_not_shortened() {
        let p = policy(0.0);
        let retry = Duration::from_secs(20);
        assert_eq!(p.delay(retry, 0, 0.5), retry);
        assert_eq!(p.delay(retry, 3, 0.5), retry);
    }

    #[test]
    fn jitter_only_adds_and_stays_within_its_fraction() {
        let p = policy(0.5);
        let retry = Duration::from_millis(1000);
        assert_eq!(p.delay(retry, 0, 0.0), retry);
        assert_eq!(p.delay(retry, 0, 0.5), Duration::from_millis(1250));
        assert!(p.delay(retry, 0, 0.999_999) < Duration::from_millis(1500));
        assert_eq!(p.delay(retry, 1, 1.0), Duration::from_millis(3000));
    }

    #[test]
    fn never_panics_on_extreme_inputs() {
        for jitter in [f64::NAN, -1.0, 0.0, 1.0, 7.0, f64::INFINITY] {
            for random in [f64::NAN, -3.0, 0.0, 0.5, 1.0, f64::INFINITY] {
                for failures in [0, 1, 31, 32, 63, 64, u32::MAX] {
                    for retry in [Duration::ZERO, Duration::from_millis(u64::MAX)] {
                        let d = policy(jitter).delay(retry, failures, random);
                        assert!(d >= retry.min(Duration::from_millis(100)));
                        assert!(d <= retry.max(Duration::from_secs(5)).saturating_mul(2));
                    }
                }
            }
        }
    }

    #[test]
    fn a_zero_retry_is_honoured_once_then_backs_off() {
        let p = policy(0.0);
        assert_eq!(p.delay(Duration::ZERO, 0, 1.0), Duration::ZERO);
        assert_eq!(p.delay(Duration::ZERO, 1, 1.0), Duration::from_millis(200));
        assert_eq!(p.delay(Duration::ZERO, 2, 1.0), Duration::from_millis(400));
    }
}
