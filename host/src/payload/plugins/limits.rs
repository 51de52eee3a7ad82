//! Memory limits of plugin instances: one instance's memories and tables together stay within
//! its plugin's `max_memory`, and all instances of all plugins together within the runtime's
//! [`MemoryBudget`] (`plugins.max_total_memory`), so that neither a component with several
//! memories nor a full instance pool can take more than configured.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wasmtime::ResourceLimiter;

/// Bytes a table element is counted as: a pointer.
const TABLE_ELEMENT_BYTES: usize = 8;

/// Instances, memories and tables one store may create at most; memory is bounded in bytes
/// anyway, these only stop a component from creating them without end.
const MAX_OBJECTS: usize = 1000;

/// Bytes that every plugin instance of a runtime may hold together.
#[derive(Debug)]
pub(crate) struct MemoryBudget {
    total: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    /// A budget of `total` bytes, none used.
    pub(crate) fn new(total: usize) -> Arc<Self> {
        Arc::new(Self {
            total,
            used: AtomicUsize::new(0),
        })
    }

    /// The budget in bytes.
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// Bytes held by live instances now.
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` from the budget; false (and nothing taken) when they do not fit.
    fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&after| after <= self.total)
            })
            .is_ok()
    }

    /// Gives `bytes` back.
    fn give(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Which limit stopped a growth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exceeded {
    /// The instance's own `max_memory`.
    Instance,
    /// The runtime's total budget.
    Budget,
}

/// One store's limiter: counts the bytes of all its memories and tables.
#[derive(Debug)]
pub(crate) struct Limiter {
    max: usize,
    held: usize,
    budget: Arc<MemoryBudget>,
    exceeded: Option<Exceeded>,
}

impl Limiter {
    /// A limiter allowing `max` bytes, taken from `budget`.
    pub(crate) fn new(max: usize, budget: Arc<MemoryBudget>) -> Self {
        Self {
            max,
            held: 0,
            budget,
            exceeded: None,
        }
    }

    /// Which limit a growth hit, if one did.
    pub(crate) fn exceeded(&self) -> Option<Exceeded> {
        self.exceeded
    }

    /// Bytes this instance holds.
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// Grows by `more` bytes, or fails (trapping the instance) naming the limit.
    fn grow(&mut self, more: usize) -> wasmtime::Result<bool> {
        let after = self.held.saturating_add(more);
        if after > self.max {
            self.exceeded = Some(Exceeded::Instance);
            wasmtime::bail!("memory limit of {} bytes reached", self.max);
        }
        if !self.budget.take(more) {
            self.exceeded = Some(Exceeded::Budget);
            wasmtime::bail!(
                "the plugins' total memory budget of {} bytes is used up",
                self.budget.total()
            );
        }
        self.held = after;
        Ok(true)
    }
}

impl Drop for Limiter {
    fn drop(&mut self) {
        self.budget.give(self.held);
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        self.grow(desired.saturating_sub(current))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        self.grow(
            desired
                .saturating_sub(current)
                .saturating_mul(TABLE_ELEMENT_BYTES),
        )
    }

    fn instances(&self) -> usize {
        MAX_OBJECTS
    }

    fn tables(&self) -> usize {
        MAX_OBJECTS
    }

    fn memories(&self) -> usize {
        MAX_OBJECTS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memories_and_tables_count_together_and_against_the_budget() {
        let budget = MemoryBudget::new(1000);
        let mut a = Limiter::new(600, Arc::clone(&budget));
        assert!(a.memory_growing(0, 400, None).unwrap());
        // A second memory counts with the first.
        assert!(a.memory_growing(0, 300, None).is_err());
        assert_eq!(a.exceeded(), Some(Exceeded::Instance));
        assert!(a.table_growing(0, 25, None).unwrap());
        assert_eq!(a.held(), 600);
        let mut b = Limiter::new(600, Arc::clone(&budget));
        assert!(b.memory_growing(0, 400, None).unwrap());
        assert!(b.memory_growing(400, 500, None).is_err());
        assert_eq!(b.exceeded(), Some(Exceeded::Budget));
        assert_eq!(budget.used(), 1000);
        drop(a);
        assert_eq!(budget.used(), 400);
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}
