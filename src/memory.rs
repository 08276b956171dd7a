//! Giving memory back to the operating system after a burst (an outage backlog, a reconnect
//! storm), so a long-running instance's RSS returns to its baseline.

/// Ask the allocator to return free pages now. With jemalloc (the default build) its background
/// thread does this on its own after `dirty_decay_ms`; glibc malloc keeps freed memory unless
/// asked.
pub fn return_free_memory() {
    #[cfg(all(not(feature = "jemalloc"), target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: malloc_trim only releases free memory held by glibc's allocator.
        unsafe {
            malloc_trim(0);
        }
    }
}
