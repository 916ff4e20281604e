//! The server and its administration commands: `serve`, `stores`, the
//! rotations (`rotate-key`, `rotate-data-key`, `rewrap-key`), `migrate` and
//! `hash-token`. They exit 0, or 1 with a message on stderr (2 for bad
//! arguments, from clap).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use credstore_core::Namespace;
use zeroize::Zeroizing;

use super::{migrate as copy, progress};
use crate::auth::{self, AdminToken, Authenticator, TokenEntry, TokenHash};
use crate::config::backends::Backends;
use crate::config::Settings;
use crate::ids::project_namespace;
use crate::runtime::stores;
use crate::Server;

/// Prints `message` after `credstore: ` to stderr; exit code 1.
pub(super) fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("credstore: {message}");
    ExitCode::FAILURE
}

/// `rotate-data-key`.
pub(super) async fn rotate_data_key(settings: &Settings, store: &str) -> ExitCode {
    let bar = progress::spinner("rotating the data key");
    let result = stores::rotate_data_key(settings, store).await;
    progress::finish(bar);
    print_or_fail(result)
}

/// `rewrap-key`.
pub(super) async fn rewrap_key(settings: &Settings, backends: &Backends, store: &str, to: &str) -> ExitCode {
    let bar = progress::spinner("rewrapping the data key");
    let result = stores::rewrap_key(settings, backends.key_providers(), store, to).await;
    progress::finish(bar);
    print_or_fail(result)
}

pub(super) async fn serve(settings: Settings) -> ExitCode {
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

pub(super) async fn list_stores(settings: &Settings, json: bool) -> ExitCode {
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

pub(super) async fn rotate_key(
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

pub(super) async fn migrate(
    settings: &Settings,
    from: &str,
    to: &str,
    scope: Option<(String, String)>,
) -> ExitCode {
    let ns = match scope {
        None => Namespace::root(),
        Some((t, p)) => match project_namespace(&t, &p) {
            Ok(ns) => ns,
            Err(e) => {
                let detail = e.to_string().replace("tenantId", "--tenant").replace("projectId", "--project");
                return fail(detail);
            }
        },
    };
    let ns = &ns;
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
    let result = copy::migrate(src.as_ref(), dst.as_ref(), |report| {
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

pub(super) fn hash_token() -> ExitCode {
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
