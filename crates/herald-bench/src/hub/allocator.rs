//! The allocator of `hub-load`, and so of `hub-load serve`, the hub it measures (the
//! `#[global_allocator]` is in `bin/hub-load.rs`, so that the SDK benches keep the
//! system allocator a program linking the SDK usually has):
//! jemalloc as the `herald` binary's (the default `jemalloc` feature), or glibc's malloc
//! (`--no-default-features`) or mimalloc (`--no-default-features --features mimalloc`),
//! so that the idle streams' memory (held, and returned once they close) can be
//! compared across allocators with the same code (BENCHMARKS.md, "Memory per idle
//! stream"). With both features (`--all-features`, as clippy is run), jemalloc wins.

/// The allocator in use, as the report names it.
#[cfg(feature = "jemalloc")]
pub const ALLOCATOR: &str = "jemalloc (tikv-jemallocator, background threads on)";
/// The allocator in use, as the report names it.
#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
pub const ALLOCATOR: &str = "mimalloc (the `mimalloc` crate, its defaults)";
/// The allocator in use, as the report names it.
#[cfg(not(any(feature = "jemalloc", feature = "mimalloc")))]
pub const ALLOCATOR: &str = "glibc malloc (the system allocator)";

/// Settings the hub's process starts with: jemalloc purges what was freed only when
/// some thread allocates, unless its background threads do it, and an idle hub's
/// threads do not allocate. What `herald` does for its hubs (herald-cli's
/// `serve::return_freed_memory`), so that the hub measured is the one shipped.
pub(crate) fn tune_for_serving() {
    #[cfg(feature = "jemalloc")]
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        eprintln!("hub-load serve: jemalloc's background threads: {e}");
    }
}
