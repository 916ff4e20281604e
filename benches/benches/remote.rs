//! Our Vault and AWS layers against the same calls made directly with
//! vaultrs and the AWS SDK, on the real test servers (OpenBao dev server,
//! moto) on loopback; 32 requests in flight against 32 in sequence; and a
//! cached get (`CacheLayer` over each store, warmed with one read) against
//! the memory store's get and against the uncached get; and a batch read
//! of 20 AWS keys (`get_many`, one `BatchGetSecretValue`) against 20
//! sequential gets.
//! Timed in interleaved rounds (`credstore_benches::rounds`); rows go to
//! `target/bench/extra/remote.json`.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_sdk_secretsmanager::config::{Credentials, Region};
use credstore_aws::{AwsConfig, AwsStore, KmsKeyProvider};
use credstore_benches::envelope;
use credstore_benches::rounds::Rounds;
use credstore_benches::summary::{Better, Row, Scenario};
use credstore_benches::{bench_out_dir, quick, test_mode};
use credstore_core::{CredentialKey, CredentialStore, CredentialStoreExt, Metadata, SecretValue, StoreId};
use credstore_layers::CacheLayer;
use credstore_memory::MemoryStore;
use credstore_test_servers::moto::{self, Moto};
use credstore_test_servers::openbao::OpenBao;
use credstore_vault::{TransitKeyProvider, VaultConfig, VaultStore};
use serde_json::json;
use vaultrs::api::kv2::requests::SetSecretRequestOptions;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};

/// A client of the AWS SDK crate `$sdk` for `$moto`, with moto's credentials
/// and the SDK's rustls (ring) client.
macro_rules! moto_client {
    ($sdk:ident, $moto:expr) => {
        $sdk::Client::from_conf(
            $sdk::Config::builder()
                .behavior_version_latest()
                .region(Region::new(moto::REGION))
                .endpoint_url($moto.endpoint())
                .credentials_provider(Credentials::new(
                    moto::ACCESS_KEY_ID,
                    moto::SECRET_ACCESS_KEY,
                    None,
                    None,
                    "bench",
                ))
                .http_client(
                    aws_smithy_http_client::Builder::new()
                        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                        ))
                        .build_https(),
                )
                .build(),
        )
    };
}

/// A fresh 32-character request token, as our layer sends with each write
/// (it becomes the new version's id).
fn uuid_like() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("bench{:027x}", N.fetch_add(1, Ordering::Relaxed) ^ (std::process::id() as u64) << 40)
}

const VALUE: &str = "bench-secret-value-0123456789abcdef";

/// Collects the remote rows, each pair timed in interleaved rounds
/// ([`Rounds`]: remote servers drift).
struct Recorder {
    rows: Vec<Row>,
    rounds: Rounds,
}

impl Recorder {
    fn new() -> Self {
        let (rounds, ops_per_round) = if test_mode() {
            (1, 1)
        } else if quick() {
            (15, 4)
        } else {
            (41, 8)
        };
        Self { rows: Vec::new(), rounds: Rounds { rounds, ops_per_round } }
    }

    fn write(&self) {
        let dir = bench_out_dir().join("extra");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("remote.json"), serde_json::to_vec_pretty(&self.rows).unwrap()).unwrap();
    }
}

/// One scenario: `ours` and `baseline`, each a future factory making
/// `s.ops_per_iter` operations, timed in interleaved rounds.
fn pair<O, OF, B, BF>(c: &mut Recorder, rt: &tokio::runtime::Runtime, s: Scenario, ours: O, baseline: B)
where
    O: Fn() -> OF,
    OF: Future<Output = ()>,
    B: Fn() -> BF,
    BF: Future<Output = ()>,
{
    let ops = s.ops_per_iter;
    pair_n(c, rt, s, (ours, ops), (baseline, ops));
}

/// [`pair`] where each side's future makes its own number of operations,
/// compared per operation ([`Rounds::compare`]).
fn pair_n<O, OF, B, BF>(
    c: &mut Recorder,
    rt: &tokio::runtime::Runtime,
    s: Scenario,
    ours: (O, u64),
    baseline: (B, u64),
) where
    O: Fn() -> OF,
    OF: Future<Output = ()>,
    B: Fn() -> BF,
    BF: Future<Output = ()>,
{
    let (o, b) = c.rounds.compare(rt, ours, baseline);
    let row = Row::new(Better::Lower, s.scenario, "ns/op", o, b, s.baseline_name, s.goal);
    println!(
        "{}: ours {:.0} ns/op, baseline {:.0} ns/op, ratio {:.2}",
        row.scenario, row.ours, row.baseline, row.ratio
    );
    c.rows.push(row);
}

fn scenario(group: &str, label: &str, ops: u64, baseline: &str, goal: Option<f64>) -> Scenario {
    Scenario {
        group: group.into(),
        scenario: label.into(),
        ops_per_iter: ops,
        baseline_name: baseline.into(),
        goal,
    }
}

/// The direct-client baselines of one backend.
struct Direct<G1, S1, G2, S2> {
    /// What the "same calls" baselines are.
    same_name: &'static str,
    /// The calls our `get` makes, made directly.
    same_get: G1,
    /// The calls our `set` makes, made directly.
    same_set: S1,
    /// What the single-call baselines are.
    min_name: &'static str,
    /// The one call a bare client needs to read a value.
    min_get: G2,
    /// The one call a bare client needs to write a value.
    min_set: S2,
    /// The goals of the rows against the single bare calls (get, set).
    min_goals: (Option<f64>, Option<f64>),
}

/// Layer overhead (ours against the same calls made directly, the goal),
/// protocol cost (ours against a single bare call, for information), and
/// 32 requests in flight against sequential, for one store.
fn bench_store<G1, G1F, S1, S1F, G2, G2F, S2, S2F>(
    c: &mut Recorder,
    rt: &tokio::runtime::Runtime,
    name: &str,
    store: Arc<dyn CredentialStore>,
    d: Direct<G1, S1, G2, S2>,
) where
    G1: Fn() -> G1F,
    G1F: Future<Output = ()>,
    S1: Fn() -> S1F,
    S1F: Future<Output = ()>,
    G2: Fn() -> G2F,
    G2F: Future<Output = ()>,
    S2: Fn() -> S2F,
    S2F: Future<Output = ()>,
{
    let key = CredentialKey::new("bench-key").unwrap();
    let value = SecretValue::from(VALUE);
    rt.block_on(store.set(&key, &value, &Metadata::new())).expect("write the key first");
    let get = || async {
        std::hint::black_box(store.get(&key).await.expect("get"));
    };
    let set = || async {
        std::hint::black_box(store.set(&key, &value, &Metadata::new()).await.expect("set"));
    };
    let s = |suffix: &str, label: &str, base: &str, goal| {
        scenario(&format!("{name}_{suffix}"), &format!("{name} {label}"), 1, base, goal)
    };
    pair(c, rt, s("get", "get", d.same_name, Some(0.9)), get, d.same_get);
    pair(c, rt, s("set", "set", d.same_name, Some(0.9)), set, d.same_set);
    let (min_get_goal, min_set_goal) = d.min_goals;
    pair(c, rt, s("get_vs_one_call", "get against one bare read", d.min_name, min_get_goal), get, d.min_get);
    pair(c, rt, s("set_vs_one_call", "set against one bare write", d.min_name, min_set_goal), set, d.min_set);
    let in_flight = || async {
        futures::future::join_all((0..32).map(|_| get())).await;
    };
    let sequential = || async {
        for _ in 0..32 {
            get().await;
        }
    };
    pair(
        c,
        rt,
        scenario(
            &format!("{name}_get_32_in_flight"),
            &format!("{name} get, 32 in flight (per request)"),
            32,
            "the same 32 gets one after another",
            None,
        ),
        in_flight,
        sequential,
    );
}

/// Gets one cached read makes per timed call, on each side of the
/// cached-against-memory row.
const CACHED_GETS: u64 = 1000;

/// A cached get (`CacheLayer` with its defaults over `store`, warmed with one
/// read) against the memory store's get of the same key and value, and
/// against `store`'s own, uncached get.
fn bench_cached(
    c: &mut Recorder,
    rt: &tokio::runtime::Runtime,
    name: &str,
    type_name: &str,
    store: Arc<dyn CredentialStore>,
) {
    let key = CredentialKey::new("bench-key").unwrap();
    let value = SecretValue::from(VALUE);
    rt.block_on(store.set(&key, &value, &Metadata::new())).expect("write the key first");
    let memory: Arc<dyn CredentialStore> = Arc::new(MemoryStore::new(StoreId::new("bench-memory").unwrap()));
    rt.block_on(memory.set(&key, &value, &Metadata::new())).expect("write the memory key");
    let cached = CacheLayer::new().build(Arc::clone(&store));
    // Warm the cache: one read of the store; every timed read is a hit.
    let warm = rt.block_on(cached.get(&key)).expect("warm the cache").expect("the key");
    assert_eq!(warm.value.expose_secret(), VALUE.as_bytes());
    let many = |s: &Arc<dyn CredentialStore>| {
        let (s, key) = (Arc::clone(s), key.clone());
        move || {
            let (s, key) = (Arc::clone(&s), key.clone());
            async move {
                for _ in 0..CACHED_GETS {
                    std::hint::black_box(s.get(&key).await.expect("get"));
                }
            }
        }
    };
    let cached_dyn: Arc<dyn CredentialStore> = cached.clone();
    pair_n(
        c,
        rt,
        scenario(
            &format!("{name}_get_cached_vs_memory"),
            &format!("{name} get, cached (CacheLayer over {type_name}) vs memory store get"),
            CACHED_GETS,
            "credstore-memory MemoryStore get",
            Some(0.5),
        ),
        (many(&cached_dyn), CACHED_GETS),
        (many(&memory), CACHED_GETS),
    );
    let uncached = || async {
        std::hint::black_box(store.get(&key).await.expect("get"));
    };
    pair_n(
        c,
        rt,
        scenario(
            &format!("{name}_get_cached_vs_uncached"),
            &format!("{name} get, cached vs uncached"),
            1,
            &format!("{type_name} get, uncached"),
            Some(100.0),
        ),
        (many(&cached_dyn), CACHED_GETS),
        (uncached, 1),
    );
    let stats = cached.stats();
    println!("{name} cache: {stats:?}");
    assert_eq!(stats.loads, 1, "every timed cached get was a hit: {stats:?}");
}

fn main() {
    let mut c = Recorder::new();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    // vaultrs is built without a crypto provider (like credstore-vault);
    // the direct client needs one process-wide.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let (Some(bao), Some(moto)) = (OpenBao::start(), Moto::start()) else {
        eprintln!("!!!! remote benches skipped: bao or moto_server missing (run through scripts/bench) !!!!");
        return;
    };

    // Vault / OpenBao KV v2.
    let _enter = rt.enter();
    let vault: Arc<dyn CredentialStore> = Arc::new(
        VaultStore::new(
            StoreId::new("bench-vault").unwrap(),
            VaultConfig::new(bao.address()).token(SecretValue::from(bao.root_token())).prefix("bench-ours"),
        )
        .expect("vault store"),
    );
    let direct = VaultClient::new(
        VaultClientSettingsBuilder::default().address(bao.address()).token(bao.root_token()).build().unwrap(),
    )
    .expect("vaultrs client");
    let payload = json!({ "value": VALUE });
    let path = "bench-direct/bench-key";
    rt.block_on(vaultrs::kv2::set(&direct, "secret", path, &payload)).expect("write the direct key first");
    // Our overwrite is one write with check-and-set at the version it last
    // saw, carrying the credential's created_at; the baseline does the same
    // on a key of its own, keeping the version each write returns.
    let cas_path = "bench-direct/bench-key-cas";
    let cas_payload = json!({ "value": VALUE, "created_at": "2026-01-01T00:00:00.000000000Z" });
    let cas_version = AtomicU64::new(
        rt.block_on(vaultrs::kv2::set(&direct, "secret", cas_path, &payload))
            .expect("write the direct cas key first")
            .version,
    );
    let (direct, payload, cas_payload, cas_version) = (&direct, &payload, &cas_payload, &cas_version);
    bench_store(
        &mut c,
        &rt,
        "vault",
        Arc::clone(&vault),
        Direct {
            same_name: "vaultrs: kv2::read / kv2::set with cas at the version last written",
            same_get: || async move {
                let v: serde_json::Value = vaultrs::kv2::read(direct, "secret", path).await.expect("read");
                std::hint::black_box(v);
            },
            same_set: || async move {
                let options = SetSecretRequestOptions { cas: cas_version.load(Ordering::Relaxed) as u32 };
                let written =
                    vaultrs::kv2::set_with_options(direct, "secret", cas_path, cas_payload, options)
                        .await
                        .expect("set");
                cas_version.store(written.version, Ordering::Relaxed);
                std::hint::black_box(written);
            },
            min_name: "vaultrs: kv2::read / kv2::set alone",
            min_get: || async move {
                let v: serde_json::Value = vaultrs::kv2::read(direct, "secret", path).await.expect("read");
                std::hint::black_box(v);
            },
            min_set: || async move {
                std::hint::black_box(vaultrs::kv2::set(direct, "secret", path, payload).await.expect("set"));
            },
            // The goals: get at least 0.9x one bare kv2::read, set
            // (overwrite) at least 0.8x one bare kv2::set.
            min_goals: (Some(0.9), Some(0.8)),
        },
    );
    // Create-only of a new key: one write with cas=0, against the same
    // write made directly (each round on fresh keys).
    let fresh = AtomicU64::new(0);
    let next = || fresh.fetch_add(1, Ordering::Relaxed);
    let value = SecretValue::from(VALUE);
    pair(
        &mut c,
        &rt,
        scenario(
            "vault_create",
            "vault create (new key)",
            1,
            "vaultrs: kv2::set with cas=0 on a new key",
            Some(0.8),
        ),
        || async {
            let key = CredentialKey::new(format!("bench-new-{}", next())).unwrap();
            std::hint::black_box(vault.create(&key, &value, &Metadata::new()).await.expect("create"));
        },
        || async {
            let path = format!("bench-direct/new-{}", next());
            let options = SetSecretRequestOptions { cas: 0 };
            std::hint::black_box(
                vaultrs::kv2::set_with_options(direct, "secret", &path, payload, options)
                    .await
                    .expect("create"),
            );
        },
    );
    bench_cached(&mut c, &rt, "vault", "VaultStore", vault);

    // AWS Secrets Manager (moto).
    let aws: Arc<dyn CredentialStore> = Arc::new(
        AwsStore::new(
            StoreId::new("bench-aws").unwrap(),
            AwsConfig::new()
                .region(moto::REGION)
                .endpoint_url(&moto.endpoint())
                .prefix("bench-ours")
                .static_credentials(moto::ACCESS_KEY_ID, SecretValue::from(moto::SECRET_ACCESS_KEY)),
        )
        .expect("aws store"),
    );
    let sdk = moto_client!(aws_sdk_secretsmanager, moto);
    let name = "bench-direct/bench-key";
    rt.block_on(sdk.create_secret().name(name).secret_string(VALUE).description("{}").send())
        .expect("create the direct secret");
    let sdk = &sdk;
    bench_store(
        &mut c,
        &rt,
        "aws",
        Arc::clone(&aws),
        Direct {
            same_name: "aws-sdk: GetSecretValue / UpdateSecret (value and description) alone",
            same_get: || async move {
                // Our get of a version the store wrote or read before: the value alone.
                std::hint::black_box(sdk.get_secret_value().secret_id(name).send().await.expect("get"));
            },
            same_set: || async move {
                // Our overwrite of a secret the store saw: value and description in one UpdateSecret.
                let version = uuid_like();
                std::hint::black_box(
                    sdk.update_secret()
                        .secret_id(name)
                        .secret_string(VALUE)
                        .description("{}")
                        .client_request_token(&version)
                        .send()
                        .await
                        .expect("update"),
                );
            },
            min_name: "aws-sdk: GetSecretValue / PutSecretValue alone",
            min_get: || async move {
                std::hint::black_box(sdk.get_secret_value().secret_id(name).send().await.expect("get"));
            },
            min_set: || async move {
                std::hint::black_box(
                    sdk.put_secret_value().secret_id(name).secret_string(VALUE).send().await.expect("put"),
                );
            },
            // The goals: get and set at least 0.8x one bare call.
            min_goals: (Some(0.8), Some(0.8)),
        },
    );
    // Batch read: 20 keys (one BatchGetSecretValue) against 20 gets one
    // after another (one GetSecretValue each), of versions the store wrote.
    let batch: Vec<CredentialKey> =
        (0..20).map(|i| CredentialKey::new(format!("bench-batch-{i:02}")).unwrap()).collect();
    for k in &batch {
        rt.block_on(aws.set(k, &SecretValue::from(VALUE), &Metadata::new())).expect("set a batch key");
    }
    let (aws_ref, batch_ref) = (&aws, &batch);
    pair(
        &mut c,
        &rt,
        scenario(
            "aws_batch_read_20",
            "batch read: aws get_many of 20 keys (moto on loopback)",
            20,
            "20 sequential aws gets of the same keys",
            Some(5.0),
        ),
        || async move {
            std::hint::black_box(aws_ref.get_many(batch_ref).await.expect("get_many"));
        },
        || async move {
            for k in batch_ref {
                std::hint::black_box(aws_ref.get(k).await.expect("get"));
            }
        },
    );
    bench_cached(&mut c, &rt, "aws", "AwsStore", aws);

    // Open + first read of an encrypted SQLite store whose key-encryption
    // key is remote, against the same with a key file: one unwrap per open.
    c.rows.push(envelope::open_and_first_read(
        &rt,
        "Vault Transit (OpenBao on loopback)",
        transit_provider(&bao),
    ));
    c.rows.push(envelope::open_and_first_read(
        &rt,
        "AWS KMS (moto on loopback)",
        rt.block_on(kms_provider(&moto)),
    ));
    c.write();
}

/// A Transit key-encryption key on `bao`: the engine enabled and a key made.
fn transit_provider(bao: &OpenBao) -> TransitKeyProvider {
    bao.cli(["secrets", "enable", "transit"]).expect("enable transit");
    bao.cli(["write", "-f", "transit/keys/bench-kek"]).expect("create the transit key");
    let config = VaultConfig::new(bao.address()).token(SecretValue::from(bao.root_token()));
    TransitKeyProvider::new(&config, "transit", "bench-kek").expect("transit provider")
}

/// A KMS key-encryption key on `moto`: a symmetric key made with the SDK.
async fn kms_provider(moto: &Moto) -> KmsKeyProvider {
    let sdk = moto_client!(aws_sdk_kms, moto);
    let created = sdk.create_key().description("credstore bench").send().await.expect("CreateKey");
    let key_id = created.key_metadata.expect("key metadata").key_id;
    let config = AwsConfig::new()
        .region(moto::REGION)
        .endpoint_url(&moto.endpoint())
        .static_credentials(moto::ACCESS_KEY_ID, SecretValue::from(moto::SECRET_ACCESS_KEY));
    KmsKeyProvider::new(&StoreId::new("bench-kms").unwrap(), &key_id, &config).expect("kms provider")
}
