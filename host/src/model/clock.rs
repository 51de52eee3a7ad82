//! The wall clock, as the outbox and the delivery workers record it.

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    now_us() / 1000
}

/// Microseconds since the Unix epoch: when an event was accepted, as its hand-off carries it.
pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
