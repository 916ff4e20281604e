//! The `credstore` binary: see [`credstore_server::cli`].

fn main() -> std::process::ExitCode {
    let code = credstore_server::cli::main();
    // Log lines go through a background writer: write what is queued.
    credstore_server::logging::flush();
    code
}
