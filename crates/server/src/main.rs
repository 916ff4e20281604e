//! The `credstore` binary: see [`credstore_server::cli`].

/// mimalloc: the server allocates and frees small buffers on every
/// request, across worker threads (see the `mimalloc` line in Cargo.toml).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Log lines are flushed before `main` returns.
    credstore_server::cli::main()
}
