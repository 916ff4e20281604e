//! The `credstore` command line: `serve` (the default), `stores`,
//! `rotate-key`, `rotate-data-key`, `rewrap-key`, `migrate`, `hash-token`
//! and `openapi`, all reading the same settings (see [`crate::config`]);
//! the data commands `get`, `set`, `ls`, `rm` and `run`, on a store of those
//! settings or of a running server ([`StoreArgs`]); `gen-key` and
//! `completions`. The exit codes are in one table ([`EXIT_CODES_HELP`],
//! shown by `--help`).
//!
//! This module parses and dispatches; each command group has its module:
//! `admin` (serve, stores, the rotations, migrate, hash-token), `migrate`
//! (the copy itself), `credentials` (get, set, ls, rm), `run`, `target`
//! (store selection), `client` (the `--server` client), `entry` (what the
//! data commands read and write), `keys` (gen-key), `progress`, `exit`
//! (exit codes), `environment` and `logging`.
//!
//! Rotations come in two kinds, and each command says which it did:
//! - a **data key rotation** re-seals every credential under a new data key
//!   (`rotate-key`, which also changes the master key, and
//!   `rotate-data-key`, which keeps it): after a key may have leaked;
//! - a **key-encryption key rotation** rewraps the data key only, no
//!   credential touched (`rotate-key --kek-only`, and `rewrap-key`, which
//!   moves the store to another key provider): on a schedule, or to move
//!   the key off the machine.
//!
//! Secrets are never taken from arguments: new keys and tokens are read from
//! stdin or a file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser, Subcommand};

use crate::config::backends::Backends;
use crate::config::{LogFormat, Settings};
use environment::Environment;

mod admin;
mod client;
mod credentials;
mod entry;
mod environment;
mod exit;
mod keys;
mod logging;
mod migrate;
mod progress;
mod run;
mod target;

pub use credentials::{GetArgs, LsArgs, RmArgs, SetArgs};
pub use exit::EXIT_CODES_HELP;
pub use keys::GenKeyArgs;
pub use run::RunArgs;
pub use target::{StoreArgs, TOKEN_ENV};

/// The credstore server, its administration commands, and credentials from
/// a shell.
#[derive(Debug, Parser)]
#[command(name = "credstore", version, about, long_about = None, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// A TOML config file (also `CREDSTORE_CONFIG`).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Log format (also `CREDSTORE_LOG_FORMAT`; the filter is `CREDSTORE_LOG`).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve {
        /// `host:port` to listen on (also `CREDSTORE_LISTEN`; default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Probe every configured store and print a table of their availability.
    /// Exits 1 when any store is unavailable.
    Stores {
        /// Print JSON (the API's list shape) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Rotate an encrypted SQLite store's master key: by default both keys
    /// (a new data key re-seals every credential, wrapped by the new master
    /// key); with --kek-only the master key alone (the data key is
    /// rewrapped, no credential touched).
    ///
    /// The new key (base64 of 32 bytes) is read from --new-key-file, or from
    /// stdin with --new-key-stdin. With neither, a fresh key is generated,
    /// which needs the store's key to live in a key file: the file is
    /// replaced by the new key once the rotation has committed, and the old
    /// key is kept as `<file>.old` until the new one has opened the store
    /// (a store opened after a crash in between finishes or undoes it).
    RotateKey {
        /// The store's id.
        #[arg(long)]
        store: String,
        /// A file holding the new key.
        #[arg(long, value_name = "PATH", conflicts_with = "new_key_stdin")]
        new_key_file: Option<PathBuf>,
        /// Read the new key from stdin.
        #[arg(long)]
        new_key_stdin: bool,
        /// Rotate the key-encryption key only: rewrap the data key under the
        /// new master key, touching no credential (the same time at any
        /// size). Without it, every credential is re-sealed under a new data
        /// key too.
        #[arg(long)]
        kek_only: bool,
    },
    /// Rotate an encrypted SQLite store's data key alone: every credential
    /// is re-sealed under a new data key, wrapped by the key-encryption key
    /// in force (whatever its provider). After a key, or a copy of the
    /// database with its key, may have leaked.
    RotateDataKey {
        /// The store's id.
        #[arg(long)]
        store: String,
    },
    /// Move an encrypted SQLite or PostgreSQL store's data key under another
    /// key provider (a key-encryption key rotation: no credential touched;
    /// replicas that have a PostgreSQL store open keep serving), then print
    /// the `key = { .. }` line to put in the store's table of the config
    /// file.
    ///
    /// The store is opened with its configured key. --to is an inline TOML
    /// table, as the `key` setting: '{ provider = "passphrase",
    /// passphrase_env = "TEAM_PASSPHRASE" }'; relative paths in it are
    /// relative to the config file's directory.
    RewrapKey {
        /// The store's id.
        #[arg(long)]
        store: String,
        /// The new key provider, as an inline TOML table.
        #[arg(long, value_name = "TABLE")]
        to: String,
    },
    /// Copy every credential (with its metadata) from one store to another,
    /// verify each copy, and report counts. Safe to re-run.
    ///
    /// With --tenant and --project, copies that project's credentials (as
    /// the API stores them); without, the stores' root namespaces.
    Migrate {
        /// The source store id.
        #[arg(long)]
        from: String,
        /// The destination store id.
        #[arg(long)]
        to: String,
        /// Only this tenant (needs --project).
        #[arg(long, requires = "project")]
        tenant: Option<String>,
        /// Only this project (needs --tenant).
        #[arg(long, requires = "tenant")]
        project: Option<String>,
    },
    /// Read a token from stdin and print its SHA-256, for `[[tokens]]` in
    /// the config file.
    HashToken,
    /// Print the OpenAPI 3.1 document.
    Openapi,
    /// Print a credential's value (raw bytes, no newline added) to stdout;
    /// never to a terminal without --show.
    Get(GetArgs),
    /// Write a credential, its value read from stdin or --from-file (never
    /// from an argument).
    Set(SetArgs),
    /// List the keys of a store, one a line, every page.
    Ls(LsArgs),
    /// Delete a credential.
    Rm(RmArgs),
    /// Run a command with credentials in its environment: every key is read
    /// first (a missing one fails before the command starts, naming it),
    /// signals are forwarded, and the exit code is the command's.
    Run(RunArgs),
    /// Print a new random master key (base64 of 32 bytes from the operating
    /// system's generator), for `master_key_env`, `master_key_file` or
    /// CREDSTORE_MASTER_KEY.
    GenKey(GenKeyArgs),
    /// Print a shell completion script: `source <(credstore completions bash)`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// How a command looks an environment variable up.
type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

impl Command {
    /// The store arguments of a data command.
    fn store_args(&self) -> Option<&StoreArgs> {
        match self {
            Command::Get(a) => Some(&a.target),
            Command::Set(a) => Some(&a.target),
            Command::Ls(a) => Some(&a.target),
            Command::Rm(a) => Some(&a.target),
            Command::Run(a) => Some(&a.target),
            _ => None,
        }
    }
}

/// What a data command reads besides its arguments: the config file (for
/// `--store`) and the environment (`CREDSTORE_TOKEN` for `--server`).
pub(crate) struct Context<'a> {
    config: Option<PathBuf>,
    log_format: Option<LogFormat>,
    backends: &'a Backends,
    env: EnvLookup,
}

impl Context<'_> {
    /// The variable `name`, as the settings read it (a secret one from the
    /// copy taken at start).
    pub(crate) fn env(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    /// Starts logging (warnings only unless `CREDSTORE_LOG` says otherwise)
    /// in the log format of `--log-format`, else the environment's.
    pub(crate) fn start_logging(&self) {
        let format = self.log_format.unwrap_or_else(|| match self.env("CREDSTORE_LOG_FORMAT").as_deref() {
            Some(f) if f.eq_ignore_ascii_case("json") => LogFormat::Json,
            _ => LogFormat::Text,
        });
        logging::init_with_default(format, "warn");
    }

    /// A store URI's context: paths from `base`, variables as the settings
    /// read them.
    pub(crate) fn config_context(&self, base: PathBuf) -> credstore_core::config::ConfigContext {
        let env = self.env.clone();
        credstore_core::config::ConfigContext::new(base).with_env(move |k: &str| env(k))
    }

    /// The settings, as every other command loads them; logging starts with
    /// warnings only unless `CREDSTORE_LOG` says otherwise.
    pub(crate) fn settings(&self) -> Result<Settings, exit::Failure> {
        let env = self.env.clone();
        let mut settings = Settings::load(self.config.as_deref(), move |k: &str| env(k), self.backends)
            .map_err(|e| exit::Failure::error(e.to_string()))?;
        if let Some(f) = self.log_format {
            settings.log_format = f;
        }
        logging::init_with_default(settings.log_format, "warn");
        Ok(settings)
    }
}

/// Runs the command line with the backends of this build
/// ([`Backends::builtin`]); the process's exit code.
pub fn main() -> ExitCode {
    main_with(Backends::builtin())
}

/// Runs the command line serving the backend types of `backends` (the
/// built-in ones and your own; see [`crate::config::backends`]); the process's exit
/// code. Log lines are flushed before it returns.
pub fn main_with(backends: Backends) -> ExitCode {
    let cli = Cli::parse();
    // Before the runtime starts its threads: the secret variables are
    // copied out and wiped from the process environment.
    // `rewrap-key --to` may name a secret variable too (`passphrase_env`).
    let to = match &cli.command {
        Some(Command::RewrapKey { to, .. }) => Some(format!("key = {to}")),
        _ => None,
    };
    let uri = cli.command.as_ref().and_then(Command::store_args).and_then(|a| a.uri.as_deref());
    let env =
        Environment::take_secrets(cli.config.as_deref(), to.as_deref(), &environment::uri_secret_names(uri));
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("credstore: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run_with_env(cli, &backends, env.lookup()));
    logging::flush();
    code
}

/// Runs one parsed command line, with the backend types of `backends`,
/// reading the process environment as it is ([`main_with`] first takes the
/// secret variables out of it).
pub async fn run(cli: Cli, backends: &Backends) -> ExitCode {
    run_with_env(cli, backends, |k: &str| std::env::var(k).ok()).await
}

async fn run_with_env(
    cli: Cli,
    backends: &Backends,
    env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
) -> ExitCode {
    let command = cli.command.unwrap_or(Command::Serve { listen: None });
    let env: EnvLookup = Arc::new(env);
    let ctx = Context { config: cli.config.clone(), log_format: cli.log_format, backends, env: env.clone() };
    let command = match command {
        Command::HashToken => return admin::hash_token(),
        Command::Openapi => {
            println!("{}", crate::http::document_json());
            return ExitCode::SUCCESS;
        }
        Command::Get(args) => return exit::code(credentials::get(args, &ctx).await),
        Command::Set(args) => return exit::code(credentials::set(args, &ctx).await),
        Command::Ls(args) => return exit::code(credentials::ls(args, &ctx).await),
        Command::Rm(args) => return exit::code(credentials::rm(args, &ctx).await),
        Command::Run(args) => return run::run(args, &ctx).await,
        Command::GenKey(args) => return exit::code(keys::gen_key(args)),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "credstore", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        other => other,
    };
    let env = move |k: &str| env(k);
    let mut settings = match Settings::load(cli.config.as_deref(), env, backends) {
        Ok(s) => s,
        Err(e) => return admin::fail(e),
    };
    if let Some(f) = cli.log_format {
        settings.log_format = f;
    }
    logging::init(settings.log_format);
    match command {
        Command::Serve { listen } => {
            if let Some(l) = listen {
                match l.parse() {
                    Ok(addr) => settings.listen = addr,
                    Err(_) => return admin::fail(format!("--listen {l:?} is not host:port")),
                }
            }
            admin::serve(settings).await
        }
        Command::Stores { json } => admin::list_stores(&settings, json).await,
        Command::RotateKey { store, new_key_file, new_key_stdin, kek_only } => {
            admin::rotate_key(&settings, &store, new_key_file, new_key_stdin, kek_only).await
        }
        Command::RotateDataKey { store } => admin::rotate_data_key(&settings, &store).await,
        Command::RewrapKey { store, to } => admin::rewrap_key(&settings, backends, &store, &to).await,
        Command::Migrate { from, to, tenant, project } => {
            admin::migrate(&settings, &from, &to, tenant.zip(project)).await
        }
        Command::HashToken
        | Command::Openapi
        | Command::Get(_)
        | Command::Set(_)
        | Command::Ls(_)
        | Command::Rm(_)
        | Command::Run(_)
        | Command::GenKey(_)
        | Command::Completions { .. } => unreachable!("handled above"),
    }
}
