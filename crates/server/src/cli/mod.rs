//! The `credstore` command line: `serve` (the default), `stores`,
//! `rotate-key`, `rotate-data-key`, `rewrap-key`, `migrate`, `hash-token`
//! and `openapi`, all reading the same settings (see [`crate::config`]);
//! the data commands `get`, `set`, `ls`, `rm` and `run`, on a store of those
//! settings or of a running server ([`StoreArgs`]); `gen-key` and
//! `completions`. The exit codes are in one table ([`EXIT_CODES_HELP`],
//! shown by `--help`).
//!
//! This module parses and dispatches; each command group has its module:
//! `credentials` (get, set, ls, rm), `run`, `client` (the `--server`
//! client), `target` (store selection) and `entry` (what they read and
//! write), `keys` (gen-key), `progress`,
//! `migrate`, `exit`.
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

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser, Subcommand};
use credstore_core::Namespace;
use zeroize::Zeroizing;

use crate::auth::{self, AdminToken, Authenticator, TokenEntry, TokenHash};
use crate::config::backends::Backends;
use crate::config::{LogFormat, Settings};
use crate::ids::project_namespace;
use crate::runtime::stores;
use crate::Server;
use environment::Environment;

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
    let env = Environment::take_secrets(cli.config.as_deref(), to.as_deref());
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

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("credstore: {message}");
    ExitCode::FAILURE
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
        Command::HashToken => return hash_token(),
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
        Err(e) => return fail(e),
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
                    Err(_) => return fail(format!("--listen {l:?} is not host:port")),
                }
            }
            serve(settings).await
        }
        Command::Stores { json } => list_stores(&settings, json).await,
        Command::RotateKey { store, new_key_file, new_key_stdin, kek_only } => {
            rotate_key(&settings, &store, new_key_file, new_key_stdin, kek_only).await
        }
        Command::RotateDataKey { store } => {
            let bar = progress::spinner("rotating the data key");
            let result = stores::rotate_data_key(&settings, &store).await;
            progress::finish(bar);
            print_or_fail(result)
        }
        Command::RewrapKey { store, to } => {
            let bar = progress::spinner("rewrapping the data key");
            let result = stores::rewrap_key(&settings, backends.key_providers(), &store, &to).await;
            progress::finish(bar);
            print_or_fail(result)
        }
        Command::Migrate { from, to, tenant, project } => {
            let ns = match tenant.zip(project) {
                None => Namespace::root(),
                Some((t, p)) => match project_namespace(&t, &p) {
                    Ok(ns) => ns,
                    Err(e) => {
                        let detail =
                            e.to_string().replace("tenantId", "--tenant").replace("projectId", "--project");
                        return fail(detail);
                    }
                },
            };
            run_migrate(&settings, &from, &to, &ns).await
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

async fn serve(settings: Settings) -> ExitCode {
    if let Err(e) = stores::prepare_data_dir(&settings.data_dir) {
        return fail(format!("cannot create the data directory {}: {e}", settings.data_dir.display()));
    }
    let admin = match auth::bootstrap_admin_token(settings.admin_token.as_ref(), &settings.data_dir) {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    match &admin {
        AdminToken::Generated(_, token, path) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "\ncredstore: generated an admin token. It is shown only this once; only its SHA-256 is kept,\n\
                 in {}. Set CREDSTORE_ADMIN_TOKEN to use your own instead.\n\n    {}\n",
                path.display(),
                token.as_str()
            );
            let _ = out.flush();
        }
        AdminToken::Stored(_, path) => {
            tracing::info!(hash_file = %path.display(), "admin token: the one generated on first run")
        }
        AdminToken::FromEnv(_) => tracing::info!("admin token: from CREDSTORE_ADMIN_TOKEN"),
    }
    let mut tokens = vec![TokenEntry::admin_with_reveal(admin.hash(), settings.admin_reveal)];
    tokens.extend(settings.tokens.iter().cloned());
    stores::warn_keys_beside_data(&settings);
    let stores = match stores::open_all(&settings).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    #[cfg(unix)]
    match crate::runtime::listener::raise_open_file_limit() {
        Ok(Some((from, to))) => tracing::info!(from, to, "raised the soft open-file limit to the hard limit"),
        Ok(None) => tracing::info!(
            limit = crate::runtime::listener::open_file_limit(),
            "open-file limit already at the hard limit"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    let server = match Server::bind(&settings, stores, Authenticator::new(tokens)).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let (address, tls) = (server.local_addr(), server.is_tls());
    // Every signal the server handles is listened for before it says it
    // listens: a SIGTERM or SIGHUP sent from then on is never the default
    // action, which ends the process.
    let running = server.run(crate::runtime::shutdown::signal());
    tracing::info!(%address, tls, data_dir = %settings.data_dir.display(), "credstore listening");
    match running.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format!("server error: {e}")),
    }
}

async fn list_stores(settings: &Settings, json: bool) -> ExitCode {
    let stores = match stores::open_all(settings).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let statuses = stores.check_all(settings.probe_timeout).await;
    let all_up = statuses.iter().all(|s| s.availability.available);
    if json {
        let data: Vec<_> = statuses
            .iter()
            .map(|s| {
                serde_json::json!({
                    "available": s.availability.available,
                    "id": s.id.as_str(),
                    "reason": s.availability.reason.clone().unwrap_or_default(),
                    "type": s.kind.as_str(),
                })
            })
            .collect();
        println!("{}", serde_json::json!({ "data": data }));
    } else {
        let w_id = statuses.iter().map(|s| s.id.as_str().len()).max().unwrap_or(0).max(2);
        let w_kind = statuses.iter().map(|s| s.kind.as_str().len()).max().unwrap_or(0).max(4);
        println!("{:<w_id$}  {:<w_kind$}  {:<9}  REASON", "ID", "TYPE", "AVAILABLE");
        for s in &statuses {
            println!(
                "{:<w_id$}  {:<w_kind$}  {:<9}  {}",
                s.id.as_str(),
                s.kind.as_str(),
                if s.availability.available { "yes" } else { "no" },
                s.availability.reason.as_deref().unwrap_or("")
            );
        }
    }
    if all_up {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn rotate_key(
    settings: &Settings,
    id: &str,
    new_key_file: Option<PathBuf>,
    new_key_stdin: bool,
    kek_only: bool,
) -> ExitCode {
    let source = match (new_key_file, new_key_stdin) {
        (Some(path), _) => stores::NewKey::File(path),
        (None, true) => {
            let mut text = Zeroizing::new(String::new());
            if let Err(e) = std::io::stdin().read_to_string(&mut text) {
                return fail(format!("cannot read the new key from stdin: {e}"));
            }
            stores::NewKey::Text(text)
        }
        (None, false) => stores::NewKey::Generate,
    };
    let bar = progress::spinner("rotating");
    let on_progress = bar.clone().map(|bar| -> stores::RotationProgress {
        Box::new(move |done, total| {
            progress::set_total(&bar, total as u64);
            bar.set_position(done as u64);
        })
    });
    let result = stores::rotate_key_with_progress(settings, id, source, kek_only, on_progress).await;
    progress::finish(bar);
    print_or_fail(result)
}

/// Prints `result`'s message and succeeds, or fails with its error.
fn print_or_fail(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

async fn run_migrate(settings: &Settings, from: &str, to: &str, ns: &Namespace) -> ExitCode {
    if from == to {
        return fail("--from and --to name the same store");
    }
    let open = |id: &str| {
        let id = id.to_owned();
        async move {
            let store = stores::open_one(settings, &id).await?;
            store.with_namespace(ns).map_err(|e| e.to_string())
        }
    };
    let (src, dst) = match tokio::join!(open(from), open(to)) {
        (Ok(s), Ok(d)) => (s, d),
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    let bar = progress::spinner("migrating: keys done");
    let result = migrate::migrate(src.as_ref(), dst.as_ref(), |report| {
        if let Some(bar) = &bar {
            bar.set_position(report.listed as u64);
        }
    })
    .await;
    progress::finish(bar);
    match result {
        Ok(report) => {
            let shown = if ns.is_root() { String::new() } else { format!(" (namespace {ns})") };
            println!("migrate {from} -> {to}{shown}: {report}");
            for (key, reason) in &report.failed {
                println!("  failed: {key}: {reason}");
            }
            if report.is_complete() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => fail(format!("migration stopped: {e}")),
    }
}

fn hash_token() -> ExitCode {
    let mut text = Zeroizing::new(String::new());
    if let Err(e) = std::io::stdin().read_to_string(&mut text) {
        return fail(format!("cannot read the token from stdin: {e}"));
    }
    let token = text.trim();
    if token.len() < auth::MIN_TOKEN_LEN {
        return fail(format!("a token is at least {} bytes long", auth::MIN_TOKEN_LEN));
    }
    println!("{}", TokenHash::of(token).to_hex());
    ExitCode::SUCCESS
}
