//! The host's memory budget: what every instance's linear memory and every
//! buffered request body may add up to, so that many requests each within
//! their own `memory_mb` cannot together take more memory than the machine
//! has. A growth or a body that would pass it is refused with a clear
//! error, and the host goes on.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
}

/// Bytes taken from the budget, given back on drop.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: usize,
}

impl MemoryBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// Three quarters of the machine's memory (`MemTotal`), or 4 GiB when
    /// it cannot be read.
    pub fn default_limit() -> usize {
        let total = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<usize>().ok())
            })
            .map_or(4 << 30, |kib| kib << 10);
        total / 4 * 3
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes reserved right now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// An empty reservation to grow.
    pub(crate) fn reserve(self: &Arc<Self>) -> Reservation {
        Reservation {
            budget: self.clone(),
            bytes: 0,
        }
    }
}

impl Reservation {
    /// Bytes this reservation holds.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes `bytes` more from the budget, unless that passes its limit.
    pub(crate) fn grow(&mut self, bytes: usize) -> bool {
        let budget = &self.budget;
        let taken = budget
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes)
                    .filter(|total| *total <= budget.limit)
            })
            .is_ok();
        if taken {
            self.bytes += bytes;
        }
        taken
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_the_limit_and_give_back_on_drop() {
        let budget = MemoryBudget::new(100);
        let mut a = budget.reserve();
        let mut b = budget.reserve();
        assert!(a.grow(60));
        assert!(!b.grow(50), "60 + 50 is past the limit");
        assert!(b.grow(40));
        drop(a);
        assert!(b.grow(60));
        assert!(!b.grow(1));
    }
}
