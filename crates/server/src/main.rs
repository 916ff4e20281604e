//! The `credstore` binary: see [`credstore_server::cli`].

/// jemalloc, with the `jemalloc` feature (on by default): every request
/// allocates and frees small buffers across worker threads, and glibc's
/// malloc slows down as a large memory store fragments its heap; jemalloc
/// does not (see the feature's note in Cargo.toml).
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    // Log lines are flushed before `main` returns.
    credstore_server::cli::main()
}
