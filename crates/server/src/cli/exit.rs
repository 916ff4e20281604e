//! The exit codes of the `credstore` commands, in one place: the table
//! `--help` shows (and the README's CLI section repeats), and the
//! [`Failure`] every data command (`get`, `set`, `ls`, `rm`, `run`) returns.
//!
//! A message goes to stderr, prefixed `credstore:`; it names the key or the
//! store and never holds a value or a token.

use std::fmt;
use std::process::ExitCode;

/// The exit codes, as `--help` shows them after the commands.
pub const EXIT_CODES_HELP: &str = "\
Exit codes (get, set, ls, rm, run; the other commands use 0, 1 and 2):
  0    success
  1    failure: a store, the server or the system failed (unavailable, timed out, I/O, config)
  2    usage: bad arguments or input, refused before any store call
  3    not found: the key (get, rm, the keys of run) or the store does not exist
  4    precondition failed: set --create-only on an existing key, or --if-version at another version
  5    denied: the server refused the token (401, 403), or the store refused access
  6    not shown: get would print a value to a terminal; add --show, or pipe or redirect stdout
  126  run: the command cannot be executed
  127  run: the command is not found
  run, once its command started: the command's exit code, or 128 + the signal that ended it";

/// Why a command failed, as its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// A store, the server or the system failed.
    Failure = 1,
    /// Bad arguments or input, refused before any store call.
    Usage = 2,
    /// The key (or the store) does not exist.
    NotFound = 3,
    /// A conditional write's condition did not hold.
    Precondition = 4,
    /// The server refused the token, or the store refused access.
    Denied = 5,
    /// A value was not printed to a terminal.
    NotShown = 6,
    /// `run`: the command cannot be executed.
    CannotExecute = 126,
    /// `run`: the command is not found.
    CommandNotFound = 127,
}

/// A failed command: its exit code and what to print (never a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The exit code.
    pub exit: Exit,
    /// The message, printed after `credstore: `.
    pub message: String,
}

impl Failure {
    /// A failure with `exit` and `message`.
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self { exit, message: message.into() }
    }

    /// Bad arguments or input ([`Exit::Usage`]).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }

    /// A store, server or system failure ([`Exit::Failure`]).
    pub fn error(message: impl Into<String>) -> Self {
        Self::new(Exit::Failure, message)
    }

    /// Prints the message to stderr; the exit code.
    pub fn report(&self) -> ExitCode {
        eprintln!("credstore: {}", self.message);
        ExitCode::from(self.exit as u8)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<credstore_core::Error> for Failure {
    /// The exit code of a store error: invalid input is [`Exit::Usage`], a
    /// failed condition [`Exit::Precondition`], a refusal [`Exit::Denied`],
    /// a missing version [`Exit::NotFound`], anything else
    /// [`Exit::Failure`]. The message is the error's, which names the store
    /// and never a value.
    fn from(e: credstore_core::Error) -> Self {
        use credstore_core::Error as E;
        let exit = match &e {
            E::InvalidKey { .. } | E::InvalidNamespace { .. } | E::InvalidInput { .. } => Exit::Usage,
            E::PreconditionFailed { .. } => Exit::Precondition,
            E::PermissionDenied { .. } => Exit::Denied,
            E::VersionNotFound { .. } => Exit::NotFound,
            _ => Exit::Failure,
        };
        Self::new(exit, e.to_string())
    }
}

/// The exit code of a command's result.
pub fn code(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => f.report(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use credstore_core::{CredentialKey, StoreId};

    #[test]
    fn every_exit_code_is_in_the_help_table_once() {
        for exit in [
            Exit::Failure,
            Exit::Usage,
            Exit::NotFound,
            Exit::Precondition,
            Exit::Denied,
            Exit::NotShown,
            Exit::CannotExecute,
            Exit::CommandNotFound,
        ] {
            let row = format!("\n  {:<5}", exit as u8);
            assert_eq!(EXIT_CODES_HELP.matches(&row).count(), 1, "{exit:?}");
        }
    }

    #[test]
    fn store_errors_map_to_their_exit_codes() {
        let store = StoreId::new("s").unwrap();
        let key = CredentialKey::new("k").unwrap();
        let failed = credstore_core::Error::PreconditionFailed {
            store: store.clone(),
            key,
            reason: "the key exists".into(),
        };
        assert_eq!(Failure::from(failed).exit, Exit::Precondition);
        let bad = CredentialKey::new("a b").unwrap_err();
        assert_eq!(Failure::from(bad).exit, Exit::Usage);
        let down = credstore_core::Error::unavailable(&store, "down");
        assert_eq!(Failure::from(down).exit, Exit::Failure);
    }
}
