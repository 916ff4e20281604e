//! The `credstore` binary: see [`credstore_server::cli`].

fn main() -> std::process::ExitCode {
    credstore_server::cli::main()
}
