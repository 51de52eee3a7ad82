//! Items spaced evenly at a rate: the replay's `rate` and an endpoint's `rate`.

use std::time::Duration;

use tokio::time::Instant;

/// Takes the next slot of a schedule whose slots are `spacing` apart, and moves `next` on by
/// one. A schedule that has fallen behind (a stall downstream, a late timer) catches up by at
/// most `slack`: past that, its slots start again from `slack` ago, so that no more than
/// `slack`'s worth of items ever goes at once, however long the stall.
pub(crate) fn take_slot(next: &mut Instant, spacing: Duration, slack: Duration) -> Instant {
    let now = Instant::now();
    let earliest = now.checked_sub(slack).unwrap_or(now);
    let slot = (*next).max(earliest);
    *next = slot + spacing;
    slot
}

/// Waits for `slot`, at once when it has passed: tokio's timer counts whole milliseconds, so a
/// rate above a thousand a second keeps up only by taking the slots already due without a
/// timer.
pub(crate) async fn wait_for(slot: Instant) {
    if slot > Instant::now() {
        tokio::time::sleep_until(slot).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn slots_keep_the_rate_and_a_stall_is_made_up_by_at_most_the_slack() {
        let start = Instant::now();
        let mut next = start;
        for _ in 0..100 {
            wait_for(take_slot(&mut next, MS, 10 * MS)).await;
        }
        assert_eq!(start.elapsed(), 99 * MS, "100 slots 1 ms apart");

        // Downstream stalls for a second: a thousand slots go by.
        tokio::time::advance(Duration::from_secs(1)).await;
        let stalled = Instant::now();
        let mut at_once = 0;
        while take_slot(&mut next, MS, 10 * MS) <= stalled {
            at_once += 1;
        }
        assert_eq!(
            at_once, 11,
            "the 10 ms of slack and the slot due now, not 1,000"
        );
        // The slot after them was 1 ms on; from it, the rate again.
        let mut went = 0;
        while Instant::now() < stalled + 100 * MS {
            wait_for(take_slot(&mut next, MS, 10 * MS)).await;
            went += 1;
        }
        assert_eq!(went, 99, "slots at 2, 3, ..., 100 ms after the stall");
    }

    #[tokio::test(start_paused = true)]
    async fn without_slack_every_slot_is_spaced() {
        let start = Instant::now();
        let mut next = start;
        tokio::time::advance(Duration::from_secs(1)).await;
        let resumed = Instant::now();
        for _ in 0..5 {
            wait_for(take_slot(&mut next, 100 * MS, Duration::ZERO)).await;
        }
        assert_eq!(resumed.elapsed(), 400 * MS, "slots at 0, 100, ..., 400 ms");
    }
}
