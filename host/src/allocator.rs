//! The process's memory allocator (glibc's malloc on Linux, which the plugins share): its settings
//! and handing freed memory back. Elsewhere these are no-ops. docs/benchmarks.md has the
//! measurements behind each (findings 10, 24, 26 and 30).

/// Sets glibc's allocator for the process, each setting unless its environment variable is set
/// (which then wins). Call it first thing in `main`, before any other thread exists.
/// - Arenas: glibc gives threads that allocate at once arenas of their own (up to eight per core)
///   and keeps what is freed in each for that arena: the reader, the writer and the plugins'
///   runtime threads of a migration held about 35 MB more at 100k records than with two.
/// - Top pad and mmap threshold: glibc's defaults (128 KiB each), set so that glibc keeps the
///   threshold instead of raising it as large blocks are freed. A block that large, such as the
///   tables a source builds to plan its reads, is then a memory map of its own, unmapped when
///   freed, instead of a piece of an arena's heap that may stay resident (see [`streaming`]).
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        glibc::set("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, 2);
        glibc::set_streaming(false);
    }
}

/// glibc's settings for loading a stream of batches into a store, until the guard is dropped.
/// What the source freed while preparing goes back first; then the top pad is 64 MiB and the
/// mmap threshold 32 MiB. Lance's encoder allocates and frees buffers of several MB for every
/// page it writes: as memory maps, or in heaps that glibc shrinks after each, the next page's
/// buffers were fresh pages the kernel had to zero (chroma → lance at 100k records about 10%
/// slower); with these settings they come from heaps that keep their pages. Not for the whole
/// process, because glibc never shrinks a thread arena's heap (64 MiB at most) under that pad:
/// what the source's preparation touched there (tens of MB at a million records) would stay
/// resident through the stream.
#[must_use = "the stream's settings last as long as the guard"]
pub fn streaming() -> Streaming {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        glibc::release_freed();
        glibc::set_streaming(true);
    }
    Streaming { _private: () }
}

/// Returned by [`streaming`]; dropping it sets the process's settings back.
pub struct Streaming {
    _private: (),
}

impl Drop for Streaming {
    fn drop(&mut self) {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        glibc::set_streaming(false);
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    pub fn set_streaming(streaming: bool) {
        let (top_pad, mmap_threshold) = if streaming {
            (64 << 20, 32 << 20)
        } else {
            (128 << 10, 128 << 10)
        };
        set("MALLOC_TOP_PAD_", libc::M_TOP_PAD, top_pad);
        set("MALLOC_MMAP_THRESHOLD_", libc::M_MMAP_THRESHOLD, mmap_threshold);
    }

    /// Sets an allocator parameter unless the environment variable that sets it is given.
    pub fn set(variable: &str, parameter: libc::c_int, value: libc::c_int) {
        if std::env::var_os(variable).is_none() {
            // SAFETY: mallopt only sets an allocator parameter. Threads allocating meanwhile read
            // the pad and the threshold, aligned words, without a lock; either value is valid.
            unsafe {
                libc::mallopt(parameter, value);
            }
        }
    }

    /// Hands the free pages of glibc's heaps back to the operating system: glibc keeps freed
    /// memory for later allocations.
    pub fn release_freed() {
        // SAFETY: malloc_trim only returns free pages; it touches no live allocation.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}
