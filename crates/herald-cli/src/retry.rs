//! The one retry policy of the CLI's requests, to a hub (`emit`, `exec`, `watch`) or
//! to a model's API (`demo --llm`): exponential backoff with jitter, never sooner than
//! the server's `Retry-After`.

use std::time::Duration;

/// Waits between attempts: from `first`, doubling up to `max`, each drawn between half
/// and the whole of that (so that many clients do not retry in step), and at least
/// what the hub asked for.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// A backoff whose first wait is about `first`, growing to about `max`.
    pub(crate) fn new(first: Duration, max: Duration) -> Backoff {
        Backoff {
            next: first,
            max: max.max(first),
        }
    }

    /// The wait before the next attempt, at least `retry_after` (the hub's
    /// `Retry-After`) when it sent one.
    pub(crate) fn delay(&mut self, retry_after: Option<Duration>) -> Duration {
        let step = self.next;
        self.next = (self.next * 2).min(self.max);
        let jittered = step.mul_f64(rand::random_range(0.5..=1.0));
        jittered.max(retry_after.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::Backoff;
    use std::time::Duration;

    #[test]
    fn waits_double_up_to_the_limit_with_jitter_and_honour_retry_after() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(100), ms(400));
        for step in [100, 200, 400, 400] {
            let wait = backoff.delay(None);
            assert!(
                wait >= ms(step / 2) && wait <= ms(step),
                "{wait:?} for a step of {step} ms"
            );
        }
        assert_eq!(backoff.delay(Some(ms(5000))), ms(5000), "Retry-After wins");
        let mut small = Backoff::new(ms(100), ms(400));
        assert!(
            small.delay(Some(ms(10))) >= ms(50),
            "a shorter Retry-After does not"
        );
    }
}
