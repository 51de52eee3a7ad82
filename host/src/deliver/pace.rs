//! An endpoint's request rate limit (`rate`): attempts are spaced evenly, at most `rate` per
//! second, retries included, across all of the endpoint's workflows.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::model::pace;

/// When the endpoint's next attempt may start.
#[derive(Debug)]
pub(super) struct Pacer {
    next: Mutex<Instant>,
}

impl Default for Pacer {
    fn default() -> Self {
        Self {
            next: Mutex::new(Instant::now()),
        }
    }
}

impl Pacer {
    /// Waits for this attempt's turn at `rate` requests per second (at once without a rate).
    pub(super) async fn turn(&self, rate: Option<f64>) {
        let Some(rate) = rate else {
            return;
        };
        let spacing = Duration::from_secs_f64(1.0 / rate);
        let slot = pace::take_slot(
            &mut self
                .next
                .lock()
                .expect("the pacer's lock is never poisoned"),
            spacing,
            Duration::ZERO,
        );
        pace::wait_for(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn attempts_are_spaced_at_the_rate() {
        let pacer = Pacer::default();
        let start = Instant::now();
        for _ in 0..5 {
            pacer.turn(Some(10.0)).await;
        }
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(400),
            "turns at 0, 100, ..., 400 ms"
        );
        let start = Instant::now();
        for _ in 0..5 {
            pacer.turn(None).await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "no rate, no wait");
    }
}
