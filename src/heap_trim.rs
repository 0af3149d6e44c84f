//! Gives freed heap memory back to the operating system.
//!
//! glibc's malloc keeps what a program frees in its arenas and returns it to
//! the kernel only from the top of the heap. After a burst (a hundred users
//! joining a channel at once, each sent a hundred occupant presences) the
//! freed stanzas are scattered through the arenas, and the gateway's resident
//! size would stay at the burst's peak for as long as it runs. So once a
//! second the trimmer asks malloc how much it holds unused, and past a
//! threshold calls `malloc_trim`, which releases free pages wherever they are.
//! Both calls are glibc's own; no crate wraps them beyond `libc`.

use std::time::Duration;

/// How often the free heap is checked.
const INTERVAL: Duration = Duration::from_secs(1);
/// Free heap worth handing back; below this a trim is not worth its walk.
const THRESHOLD_BYTES: usize = 1 << 20;
/// Trimmed pages still count as free, so a trim is repeated only once the
/// free heap has changed by this much since the last one.
const CHANGE_BYTES: usize = 256 << 10;

/// Start the trimmer; it runs for the life of the runtime.
pub fn spawn() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(async {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut after_last_trim = 0;
        loop {
            tick.tick().await;
            let free = free_heap_bytes();
            if free >= THRESHOLD_BYTES && free.abs_diff(after_last_trim) >= CHANGE_BYTES {
                let released = trim();
                after_last_trim = free_heap_bytes();
                tracing::trace!(free, released, "returned free heap to the system");
            }
        }
    });
}

/// Bytes malloc holds free in its arenas.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn free_heap_bytes() -> usize {
    // SAFETY: mallinfo2 only reads malloc's statistics and returns them by value.
    let info = unsafe { libc::mallinfo2() };
    info.fordblks
}

/// Release free pages; true if any were.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() -> bool {
    // SAFETY: malloc_trim is safe to call at any time from any thread.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    use super::*;

    #[test]
    fn trimming_returns_freed_memory() {
        // Many small blocks, freed out of order, leave holes below the top of
        // the heap that only a trim gives back.
        let blocks: Vec<Vec<u8>> = (0..20_000).map(|i| vec![i as u8; 1024]).collect();
        let keep: Vec<Vec<u8>> = blocks
            .into_iter()
            .enumerate()
            .filter_map(|(i, b)| (i % 64 == 0).then_some(b))
            .collect();
        assert!(free_heap_bytes() >= THRESHOLD_BYTES);
        assert!(trim(), "malloc_trim released nothing");
        drop(keep);
    }
}
