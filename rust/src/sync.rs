//! Atomics shim: `std` normally, loom's model-checked versions under `cfg(loom)`,
//! so the lock-free window is checked by loom without changing its code.

#[cfg(loom)]
pub use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
#[cfg(loom)]
pub use loom::sync::Arc;

#[cfg(not(loom))]
pub use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub use std::sync::Arc;

/// A hint inside retry loops; loom needs to know the thread is waiting.
#[inline]
pub fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}

/// A value replaced as a whole and read without blocking its writer, so a
/// reader sees one whole value, never parts of two: `arc_swap` normally;
/// under loom a loom mutex around the `Arc`, so loom schedules the one
/// publication point against every reader (arc_swap's own atomics are
/// checked by its own tests, not by these models).
pub struct SwapCell<T> {
    #[cfg(not(loom))]
    cell: arc_swap::ArcSwapOption<T>,
    #[cfg(loom)]
    cell: loom::sync::Mutex<Option<std::sync::Arc<T>>>,
}

impl<T> Default for SwapCell<T> {
    fn default() -> Self {
        Self {
            cell: Default::default(),
        }
    }
}

impl<T> SwapCell<T> {
    /// Replaces the value (`None`: empty).
    pub fn store(&self, value: Option<std::sync::Arc<T>>) {
        #[cfg(not(loom))]
        self.cell.store(value);
        #[cfg(loom)]
        {
            *self.locked() = value;
        }
    }

    /// Calls `read` with the current value, read once.
    #[inline(always)]
    pub fn read<R>(&self, read: impl FnOnce(Option<&T>) -> R) -> R {
        #[cfg(not(loom))]
        {
            read(self.cell.load().as_deref())
        }
        #[cfg(loom)]
        {
            read(self.locked().as_deref())
        }
    }

    #[cfg(loom)]
    fn locked(&self) -> loom::sync::MutexGuard<'_, Option<std::sync::Arc<T>>> {
        self.cell
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
