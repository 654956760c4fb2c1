//! The process's memory allocator (glibc's malloc on Linux, which the plugins share): its settings
//! and handing freed memory back. Elsewhere these are no-ops. docs/benchmarks.md has the
//! measurements behind each.

/// Two settings of glibc's allocator, each unless its environment variable is set (which then
/// wins). Call it first thing in `main`, before any other thread exists.
/// - Arenas: glibc gives threads that allocate at once arenas of their own (up to eight per core)
///   and keeps what is freed in each for that arena: the reader, the writer and the plugins'
///   runtime threads of a migration held about 35 MB more at 100k records than with two.
/// - Top pad: each time an arena's heap grows or shrinks, glibc adds or keeps this much beyond
///   what was asked (128 KiB by default). Lance's encoder allocates and frees buffers of several
///   MB for every page it writes; with the default, the heap shrank after each and the next page's
///   buffers came back as fresh pages the kernel had to zero. 64 MiB keeps them: chroma → lance
///   at 100k records about 10% faster, at the same peak RSS.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let settings = [
            ("MALLOC_ARENA_MAX", libc::M_ARENA_MAX, 2),
            ("MALLOC_TOP_PAD_", libc::M_TOP_PAD, 64 << 20),
        ];
        for (variable, parameter, value) in settings {
            if std::env::var_os(variable).is_none() {
                // SAFETY: mallopt only sets an allocator parameter.
                unsafe {
                    libc::mallopt(parameter, value);
                }
            }
        }
    }
}

/// Hands the free pages of glibc's heaps back to the operating system. glibc keeps freed memory
/// for later allocations, so what a plugin frees after preparing a stream (the chroma plugin's
/// read plan is built with id tables of tens of MB at a million records) would otherwise stay in
/// the process for the whole stream.
pub fn release_freed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages; it touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}
