//! Helpers shared by the integration tests of credstore-vault.

use credstore_conformance::unique_name;
use credstore_test_servers::openbao::OpenBao;

/// What a KV v2 mount answers to the mount check.
pub const KV2_MOUNT: &str = r#"{"data":{"type":"kv","options":{"version":"2"}}}"#;

/// Runs the `bao` CLI against `bao`, off the async runtime; its stdout.
pub fn bao_cli(bao: &OpenBao, args: &[&str]) -> String {
    tokio::task::block_in_place(|| bao.cli(args)).unwrap_or_else(|e| panic!("{e}"))
}

/// Writes a new policy that covers `secret/` under `prefix` only; its name.
pub fn prefix_policy(bao: &OpenBao, prefix: &str) -> String {
    let policy = unique_name("pol");
    bao.write_policy(
        &policy,
        &format!(
            r#"
path "secret/data/{prefix}/*" {{ capabilities = ["create", "read", "update", "delete"] }}
path "secret/metadata/{prefix}/*" {{ capabilities = ["read", "list", "delete"] }}
path "secret/delete/{prefix}/*" {{ capabilities = ["update"] }}
path "secret/destroy/{prefix}/*" {{ capabilities = ["update"] }}
"#
        ),
    );
    policy
}

/// The `reason` of `$err`, which must be an `Error::$variant` (with a
/// `reason`); any other error panics, naming it.
macro_rules! reason_of {
    ($err:expr, $variant:ident) => {
        match $err {
            credstore_core::Error::$variant { reason, .. } => reason,
            other => panic!(concat!("expected ", stringify!($variant), ", got {:?}"), other),
        }
    };
}
pub(crate) use reason_of;
