//! `credstore gen-key`: a new master key for the `*_env` / `*_file` key
//! settings (`master_key_env`, `master_key_file`, `CREDSTORE_MASTER_KEY`,
//! `key = { provider = "master-key", .. }`).
//!
//! The key is 32 bytes from the operating system's generator
//! ([`MasterKey::generate`]), printed as the standard padded base64 (44
//! characters) those settings read ([`MasterKey::to_base64`]), then a
//! newline (which they ignore). With `--out PATH` it is written to a new
//! file instead, owner-only (0600) from its creation, as a key file must be.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use credstore_sqlite::MasterKey;

use super::exit::Failure;

/// `credstore gen-key`.
#[derive(Debug, Args)]
pub struct GenKeyArgs {
    /// Write the key to this new file (mode 0600) instead of stdout; an
    /// existing file is never overwritten.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
}

/// `credstore gen-key`.
pub(crate) fn gen_key(args: GenKeyArgs) -> Result<(), Failure> {
    let key = MasterKey::generate();
    let text = key.to_base64().ok_or_else(|| Failure::error("a generated key has bytes"))?;
    let mut line = zeroize::Zeroizing::new(Vec::with_capacity(text.len() + 1));
    line.extend_from_slice(text.as_bytes());
    line.push(b'\n');
    match args.out {
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(&line)
                .and_then(|()| out.flush())
                .map_err(|e| Failure::error(format!("cannot write the key to stdout: {e}")))
        }
        Some(path) => {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            options
                .open(&path)
                .and_then(|mut f| f.write_all(&line).and_then(|()| f.sync_all()))
                .map_err(|e| Failure::error(format!("cannot write the key to {}: {e}", path.display())))
        }
    }
}
