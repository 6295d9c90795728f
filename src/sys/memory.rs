//! Handing freed heap memory back to the system. glibc keeps a heap
//! (an arena) per thread that allocated, and what a thread frees stays
//! resident in its arena; after a large request on one worker and the
//! next on another, the hub's resident size is the sum of both. A trim
//! after each large request keeps the resident size near what is live.

/// Returns free heap pages to the system (glibc); nothing elsewhere,
/// where the allocator does this itself or cannot be asked.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers; it only walks the allocator's
    // own free lists under their locks.
    unsafe {
        libc::malloc_trim(0);
    }
}
