//! Giving memory back to the operating system after a burst (an outage backlog, a reconnect
//! storm), so a long-running instance's RSS returns to its baseline.

/// Ask the allocator to return free pages (glibc keeps them by default).
pub fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
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
