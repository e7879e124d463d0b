//! Where the tracker's time comes from: the system clock, or a manual one
//! that tests and replays move by hand.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Milliseconds since the Unix epoch. Wall-clock time, not monotonic, so
/// persisted windows line up with the clock after a restart.
#[derive(Debug, Clone)]
pub enum Clock {
    /// The system's real-time clock.
    System,
    /// A clock that moves only when told to.
    Manual(Arc<AtomicU64>),
}

impl Clock {
    /// A manual clock starting at `start_ms`.
    pub fn manual(start_ms: u64) -> Self {
        Clock::Manual(Arc::new(AtomicU64::new(start_ms)))
    }

    /// The current time in milliseconds since the Unix epoch.
    #[inline]
    pub fn now_ms(&self) -> u64 {
        match self {
            Clock::System => system_now_ms(),
            // Relaxed: the clock is a single value; ordering with the
            // windows' own atomics is not needed for correctness.
            Clock::Manual(now) => now.load(Ordering::Relaxed),
        }
    }
}

#[cfg(target_os = "linux")]
#[inline]
fn system_now_ms() -> u64 {
    // CLOCK_REALTIME_COARSE reads the kernel's last tick (1-4 ms resolution)
    // without touching the hardware clock: ~5 ns instead of ~20 ns, and
    // buckets are seconds wide.
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the call to fill.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut now) };
    if status == 0 {
        (now.tv_sec as u64) * 1000 + (now.tv_nsec as u64) / 1_000_000
    } else {
        portable_now_ms()
    }
}

#[cfg(not(target_os = "linux"))]
#[inline]
fn system_now_ms() -> u64 {
    portable_now_ms()
}

fn portable_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How far the coarse clock may trail the precise one: the kernel's last
    /// tick (HZ >= 100, so at most 10 ms), twice for slack. A property of
    /// the clock, not of how fast this test runs.
    const COARSE_LAG_MS: u64 = 20;

    #[test]
    fn system_clock_lies_between_two_precise_reads() {
        // Bracketed by reads before and after, so however late the thread
        // is scheduled between them the bounds still hold.
        let before = portable_now_ms();
        let ours = Clock::System.now_ms();
        let after = portable_now_ms();
        assert!(ours <= after, "{ours} after {after}");
        assert!(ours + COARSE_LAG_MS >= before, "{ours} trails {before}");
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = Clock::manual(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        if let Clock::Manual(now) = &clock {
            now.fetch_add(500, Ordering::Relaxed);
        }
        assert_eq!(clock.now_ms(), 1_500);
    }
}
