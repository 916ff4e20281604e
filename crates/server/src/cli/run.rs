//! `credstore run [--env NAME=KEY ...] [--prefix P ...] -- CMD ARGS`: runs a
//! command with credentials in its environment.
//!
//! 1. The variables are worked out from the arguments: `--env NAME=KEY`
//!    sets `NAME` to the value of `KEY`; `--prefix P` sets a variable for
//!    every key that starts with `P`, named by the rest of the key
//!    upper-cased, with `.` and `-` as `_` (`--prefix app.` makes
//!    `app.db-password` into `DB_PASSWORD`). A name that is not a variable
//!    name (`[A-Za-z_][A-Za-z0-9_]*`: the rest is empty or starts with a
//!    digit), or two keys for one name, is an error naming them (exit 2).
//! 2. Every value is read first, in batches ([`Target::values`]): a
//!    missing key fails (exit 3) naming it, and a value that is not text
//!    (binary, or holding a NUL byte) fails naming it (exit 1), before the
//!    command starts.
//! 3. The command runs with the values in its environment only (never in
//!    its arguments), added to the environment credstore got (the secret
//!    variables credstore reads itself, `CREDSTORE_TOKEN` and the master
//!    keys, are not passed on); stdin, stdout and stderr are inherited.
//!    SIGINT, SIGTERM, SIGHUP and SIGQUIT that credstore receives are sent
//!    on to the command (a Ctrl-C in a terminal reaches both, as the
//!    terminal signals the whole foreground group). credstore exits with
//!    the command's exit code, or 128 + the signal that ended it; 127 when
//!    the command is not found, 126 when it cannot be executed.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::process::ExitCode;

use clap::Args;
use credstore_core::{CredentialKey, SecretValue, MAX_PAGE_SIZE};

use super::exit::{Exit, Failure, EXIT_CODES_HELP};
use super::target::{parse_key, StoreArgs, Target};
use super::Context;

/// `credstore run`.
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES_HELP)]
pub struct RunArgs {
    /// Set the variable NAME to the value of KEY (repeatable).
    #[arg(long = "env", value_name = "NAME=KEY")]
    pub env: Vec<String>,
    /// Set a variable for every key under PREFIX, named by the rest of the
    /// key upper-cased, `.` and `-` as `_` (repeatable).
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Vec<String>,
    /// The store.
    #[command(flatten)]
    pub target: StoreArgs,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// Whether `name` is an environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The variable a key under `--prefix` sets: the rest of the key after the
/// prefix, upper-cased, `.` and `-` as `_`.
pub(crate) fn var_name(rest: &str) -> String {
    rest.chars()
        .map(|c| match c {
            '.' | '-' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

/// The variables and the key each takes its value from.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    pub vars: BTreeMap<String, CredentialKey>,
}

impl Plan {
    /// Adds `name` = the value of `key`; two keys for one name are an error.
    fn add(&mut self, name: String, key: CredentialKey, origin: &str) -> Result<(), Failure> {
        if !is_var_name(&name) {
            return Err(Failure::usage(format!(
                "{origin}: {name:?} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
            )));
        }
        match self.vars.get(&name) {
            Some(other) => Err(Failure::usage(format!(
                "{origin}: the variable {name} would be set from both '{other}' and '{key}'"
            ))),
            None => {
                self.vars.insert(name, key);
                Ok(())
            }
        }
    }

    /// The variables of `--env NAME=KEY` arguments.
    pub(crate) fn from_env_args(args: &[String]) -> Result<Self, Failure> {
        let mut plan = Self::default();
        for arg in args {
            let Some((name, key)) = arg.split_once('=') else {
                return Err(Failure::usage(format!("--env {arg:?}: give NAME=KEY")));
            };
            plan.add(name.to_owned(), parse_key(key)?, &format!("--env {arg}"))?;
        }
        Ok(plan)
    }

    /// Adds the variables of `keys`, listed under `prefix`.
    pub(crate) fn add_prefixed(&mut self, prefix: &str, keys: Vec<CredentialKey>) -> Result<(), Failure> {
        for key in keys {
            let rest = key.as_str().strip_prefix(prefix).unwrap_or_default();
            let origin = format!("--prefix {prefix} (key '{key}')");
            self.add(var_name(rest), key, &origin)?;
        }
        Ok(())
    }
}

/// Every key under `prefix`.
async fn list_all(target: &Target, prefix: &str) -> Result<Vec<CredentialKey>, Failure> {
    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let (page, next) = target.list(prefix, cursor.as_deref(), MAX_PAGE_SIZE).await?;
        for k in page {
            keys.push(CredentialKey::new(k)?);
        }
        match next {
            Some(c) => cursor = Some(c),
            None => return Ok(keys),
        }
    }
}

/// The variables with their values, every key read, before the command runs.
async fn resolve(args: &RunArgs, ctx: &Context<'_>) -> Result<Vec<(String, SecretValue)>, Failure> {
    let mut plan = Plan::from_env_args(&args.env)?;
    for prefix in &args.prefix {
        credstore_core::ListOptions::new().with_prefix(prefix.as_str())?;
    }
    let target = Target::open(&args.target, ctx).await?;
    for prefix in &args.prefix {
        let keys = list_all(&target, prefix).await?;
        plan.add_prefixed(prefix, keys)?;
    }
    let (names, keys): (Vec<String>, Vec<CredentialKey>) = plan.vars.into_iter().unzip();
    let values = target.values(&keys).await?;
    let mut vars = Vec::with_capacity(names.len());
    for ((name, key), value) in names.into_iter().zip(&keys).zip(values) {
        let Some(value) = value else {
            return Err(Failure::new(
                Exit::NotFound,
                format!(
                    "no credential '{key}' in store '{}' (for {name}); the command was not run",
                    target.store_id()
                ),
            ));
        };
        let text_ok = value.expose_str().is_ok_and(|t| !t.contains('\0'));
        if !text_ok {
            return Err(Failure::error(format!(
                "the value of '{key}' (for {name}) is not text without NUL bytes, which an environment variable \
                 needs; the command was not run"
            )));
        }
        vars.push((name, value));
    }
    Ok(vars)
}

/// `credstore run`: the command's exit code, or the failure that kept it
/// from starting.
pub(crate) async fn run(args: RunArgs, ctx: &Context<'_>) -> ExitCode {
    let vars = match resolve(&args, ctx).await {
        Ok(vars) => vars,
        Err(f) => return f.report(),
    };
    match spawn_and_wait(&args.command, vars).await {
        Ok(code) => code,
        Err(f) => f.report(),
    }
}

#[cfg(unix)]
async fn spawn_and_wait(command: &[OsString], vars: Vec<(String, SecretValue)>) -> Result<ExitCode, Failure> {
    use std::os::unix::process::ExitStatusExt;
    use tokio::signal::unix::{signal, SignalKind};

    let (program, rest) = command.split_first().ok_or_else(|| Failure::usage("no command given"))?;
    // Listening before the child exists: a signal from now on is forwarded,
    // never the default action that would end credstore alone.
    let kinds = [
        (SignalKind::interrupt(), libc::SIGINT),
        (SignalKind::terminate(), libc::SIGTERM),
        (SignalKind::hangup(), libc::SIGHUP),
        (SignalKind::quit(), libc::SIGQUIT),
    ];
    let mut listeners = Vec::with_capacity(kinds.len());
    for (kind, number) in kinds {
        let listener =
            signal(kind).map_err(|e| Failure::error(format!("cannot listen for signal {number}: {e}")))?;
        listeners.push((listener, number));
    }
    let mut cmd = std::process::Command::new(program);
    cmd.args(rest);
    for (name, value) in &vars {
        // Checked in `resolve`: text without NUL bytes.
        cmd.env(name, value.expose_str().unwrap_or_default());
    }
    let spawned = cmd.spawn();
    // The values now live in the child's environment; the command's copy
    // goes with it.
    drop(cmd);
    drop(vars);
    let mut child = spawned.map_err(|e| {
        let shown = program.to_string_lossy();
        match e.kind() {
            std::io::ErrorKind::NotFound => {
                Failure::new(Exit::CommandNotFound, format!("{shown}: command not found"))
            }
            _ => Failure::new(Exit::CannotExecute, format!("{shown}: cannot be executed: {e}")),
        }
    })?;
    let pid = child.id() as libc::pid_t;
    let mut waiting = tokio::task::spawn_blocking(move || child.wait());
    let status = loop {
        let forwarded = futures::future::select_all(listeners.iter_mut().map(|(l, n)| {
            let n = *n;
            Box::pin(async move {
                l.recv().await;
                n
            })
        }));
        tokio::select! {
            done = &mut waiting => break done,
            (number, _, _) = forwarded => {
                // SAFETY: kill(2) with our own child's id, which is not
                // reaped (so not reused) until `waiting` completes.
                unsafe { libc::kill(pid, number) };
            }
        }
    };
    let status = status
        .map_err(|e| Failure::error(format!("waiting for the command failed: {e}")))?
        .map_err(|e| Failure::error(format!("waiting for the command failed: {e}")))?;
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    };
    Ok(ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1)))
}

#[cfg(not(unix))]
async fn spawn_and_wait(command: &[OsString], vars: Vec<(String, SecretValue)>) -> Result<ExitCode, Failure> {
    let (program, rest) = command.split_first().ok_or_else(|| Failure::usage("no command given"))?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(rest);
    for (name, value) in &vars {
        cmd.env(name, value.expose_str().unwrap_or_default());
    }
    let mut child = cmd.spawn().map_err(|e| {
        let shown = program.to_string_lossy();
        match e.kind() {
            std::io::ErrorKind::NotFound => {
                Failure::new(Exit::CommandNotFound, format!("{shown}: command not found"))
            }
            _ => Failure::new(Exit::CannotExecute, format!("{shown}: cannot be executed: {e}")),
        }
    })?;
    drop(cmd);
    drop(vars);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .map_err(|e| Failure::error(format!("waiting for the command failed: {e}")))?
        .map_err(|e| Failure::error(format!("waiting for the command failed: {e}")))?;
    Ok(ExitCode::from(u8::try_from(status.code().unwrap_or(1) & 0xff).unwrap_or(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> CredentialKey {
        CredentialKey::new(k).unwrap()
    }

    #[test]
    fn prefixed_keys_become_upper_case_names_with_underscores() {
        let mut plan = Plan::default();
        plan.add_prefixed("app.", vec![key("app.db-password"), key("app.api.token")]).unwrap();
        let names: Vec<_> = plan.vars.keys().map(String::as_str).collect();
        assert_eq!(names, ["API_TOKEN", "DB_PASSWORD"]);
        assert_eq!(plan.vars["DB_PASSWORD"], key("app.db-password"));
    }

    #[test]
    fn two_keys_for_one_name_are_an_error_naming_both() {
        let mut plan = Plan::default();
        let e = plan.add_prefixed("", vec![key("a.b"), key("a-b")]).unwrap_err();
        assert_eq!(e.exit, Exit::Usage);
        assert!(
            e.message.contains("'a.b'") && e.message.contains("'a-b'") && e.message.contains("A_B"),
            "{e}"
        );
        let mut plan = Plan::from_env_args(&["TOKEN=t".into()]).unwrap();
        let e = plan.add_prefixed("", vec![key("token")]).unwrap_err();
        assert!(e.message.contains("TOKEN"), "an --env name and a prefixed one collide too: {e}");
    }

    #[test]
    fn names_that_are_not_variable_names_are_refused() {
        for bad in ["1PASSWORD=k", "=k", "A-B=k", "k"] {
            let e = Plan::from_env_args(&[bad.to_owned()]).unwrap_err();
            assert_eq!(e.exit, Exit::Usage, "{bad}");
        }
        let mut plan = Plan::default();
        assert_eq!(plan.add_prefixed("app.", vec![key("app.1st")]).unwrap_err().exit, Exit::Usage);
        assert_eq!(plan.add_prefixed("app", vec![key("app")]).unwrap_err().exit, Exit::Usage, "empty rest");
        assert!(Plan::from_env_args(&["_DB=db.password".into(), "Path2=p".into()]).is_ok());
    }
}
