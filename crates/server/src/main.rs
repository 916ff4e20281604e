//! The `credstore` binary: see [`credstore_server::cli`].

fn main() -> std::process::ExitCode {
    // Log lines are flushed before `main` returns.
    credstore_server::cli::main()
}
