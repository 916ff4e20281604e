//! The OpenAPI document is exact: requests generated from its schemas alone
//! (patterns, lengths, ranges, required and closed objects) are accepted,
//! and every status a route answers is one the document declares for it.
//!
//! Four rules cannot be stated in JSON Schema and are given in the
//! descriptions instead; the generator keeps them, as a client reading the
//! document would: byte limits where `maxLength` counts characters (the
//! value, metadata values), the 900-byte budget of all metadata, at most
//! one of `If-Match` and `If-None-Match`, and an `expiresAt` in the future.
//! What a store supports is not in the schema either: a 422 that says the
//! store does not support what was asked (version history, expiry) is
//! accepted from a store whose capabilities declare it off, and only then.

use crate::util::harness;
use crate::util::property;

use std::collections::{BTreeMap, BTreeSet};

use harness::*;
use property::{runner, runtime};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Value};

/// `pattern` without its anchors and with every unbounded repetition
/// (`*`, `+`, `{m,}`) bounded to `n`, so generated strings can reach a
/// `maxLength` without running far past it.
fn bounded(pattern: &str, n: usize) -> String {
    let body = pattern.strip_prefix('^').unwrap_or(pattern);
    let body = body.strip_suffix('$').unwrap_or(body);
    let (mut out, mut chars, mut in_class) = (String::new(), body.chars().peekable(), false);
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.push(c);
                out.extend(chars.next());
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                if chars.peek() == Some(&'^') {
                    out.extend(chars.next());
                }
                // A `]` first in a class is literal.
                if chars.peek() == Some(&']') {
                    out.extend(chars.next());
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            '*' if !in_class => out.push_str(&format!("{{0,{n}}}")),
            '+' if !in_class => out.push_str(&format!("{{1,{n}}}")),
            '{' if !in_class => {
                let mut quantifier = String::new();
                while let Some(&d) = chars.peek() {
                    chars.next();
                    if d == '}' {
                        break;
                    }
                    quantifier.push(d);
                }
                match quantifier.strip_suffix(',') {
                    Some(min) => out.push_str(&format!("{{{min},{}}}", n.max(min.parse().unwrap()))),
                    None => out.push_str(&format!("{{{quantifier}}}")),
                }
            }
            _ => out.push(c),
        }
    }
    out
}

fn unbounded_repetitions(pattern: &str) -> usize {
    (bounded(pattern, 7777).matches("7777").count()).max(1)
}

/// Strings valid under a string schema: its pattern (when it has one) and
/// its `minLength` / `maxLength` (in characters).
fn string_of(schema: &Value) -> BoxedStrategy<String> {
    let min = schema["minLength"].as_u64().unwrap_or(0) as usize;
    let max = schema["maxLength"].as_u64().map_or(64, |m| m as usize);
    let fits = move |s: &String| (min..=max).contains(&s.chars().count());
    match schema["pattern"].as_str() {
        Some(pattern) => {
            let short = (max / unbounded_repetitions(pattern)).clamp(1, 12);
            let regex = |n| proptest::string::string_regex(&bounded(pattern, n)).unwrap();
            prop_oneof![
                8 => regex(short).prop_filter("length", fits),
                1 => regex(max).prop_filter("length", fits),
            ]
            .boxed()
        }
        None => prop_oneof![
            8 => any::<String>().prop_filter("length", fits),
            1 => (min..=max).prop_map(|n| "v".repeat(n)),
        ]
        .boxed(),
    }
}

/// The longest prefix of `s` of at most `bytes` bytes of UTF-8.
fn cut_to_bytes(s: &str, bytes: usize) -> String {
    let mut end = s.len().min(bytes);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Metadata valid under its schema (`propertyNames`,
/// `additionalProperties`, `maxProperties`), then held to the byte rules
/// its description states: values of at most `maxLength` bytes, keys and
/// values together at most 900 bytes.
fn metadata_of(schema: &Value) -> BoxedStrategy<Value> {
    let entries = schema["maxProperties"].as_u64().unwrap() as usize;
    let value_bytes = schema["additionalProperties"]["maxLength"].as_u64().unwrap() as usize;
    let description = schema["description"].as_str().unwrap();
    assert!(description.contains("at most 900 bytes"), "{description}");
    let map = proptest::collection::btree_map(
        string_of(&schema["propertyNames"]),
        string_of(&schema["additionalProperties"]),
        0..=entries,
    );
    let types: Vec<&str> = schema["type"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert_eq!(types, ["object", "null"]);
    prop_oneof![
        6 => map.prop_map(move |m| {
            let mut total = 0;
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                let v = cut_to_bytes(&v, value_bytes);
                if total + k.len() + v.len() <= 900 {
                    total += k.len() + v.len();
                    out.insert(k, Value::String(v));
                }
            }
            Value::Object(out)
        }),
        1 => Just(Value::Null),
    ]
    .boxed()
}

/// A `$ref`'s schema.
fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
        None => schema,
    }
}

/// Objects valid under a closed object schema: every required property,
/// each optional one or not, nothing else.
fn object_of(doc: &Value, schema: &Value, keys: &'static [&'static str]) -> BoxedStrategy<Value> {
    assert_eq!(schema["additionalProperties"], false, "{schema}");
    let required: BTreeSet<&str> =
        schema["required"].as_array().into_iter().flatten().map(|r| r.as_str().unwrap()).collect();
    let mut fields: Vec<BoxedStrategy<Option<(String, Value)>>> = Vec::new();
    for (name, prop) in schema["properties"].as_object().unwrap() {
        let prop = resolve(doc, prop);
        let value = if name == "expiresAt" {
            // In the future (a rule of the description), or null.
            let future = (0u64..1_000_000).prop_map(|s| {
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(4_102_444_800 + s);
                Value::String(humantime::format_rfc3339(at).to_string())
            });
            prop_oneof![Just(Value::Null), future].boxed()
        } else if name == "key" {
            let known = proptest::sample::select(keys).prop_map(str::to_owned);
            prop_oneof![4 => known, 1 => string_of(prop)].prop_map(Value::String).boxed()
        } else if prop["type"] == "array" {
            // A batch read's keys: known keys or any valid ones, a few.
            let item = string_of(&prop["items"]);
            let one = prop_oneof![3 => proptest::sample::select(keys).prop_map(str::to_owned), 1 => item];
            proptest::collection::vec(one.prop_map(Value::String), 0..=8).prop_map(Value::Array).boxed()
        } else if prop["type"] == "string" {
            // The byte limit of a text value, where maxLength counts characters.
            let bytes = prop["maxLength"].as_u64().unwrap() as usize;
            string_of(prop).prop_map(move |s| Value::String(cut_to_bytes(&s, bytes))).boxed()
        } else {
            metadata_of(prop)
        };
        let is_required = required.contains(name.as_str());
        let name = name.clone();
        let entry = value.prop_map(move |v| Some((name.clone(), v)));
        fields.push(if is_required { entry.boxed() } else { prop_oneof![Just(None), entry].boxed() });
    }
    fields.prop_map(|fields| Value::Object(fields.into_iter().flatten().collect())).boxed()
}

/// A token with every action, `reveal` included, in every tenant and project.
const EVERYTHING: &str = "every-action-token-0123456789";

/// A request, as generated.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    template: String,
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Option<Value>,
}

/// Schema-valid requests for one operation. Path parameters (and the body's
/// `key`) are often taken from a few values, `t`, `p`, `stores` and `keys`
/// (ids the server knows), so deep paths and existing keys are reached too.
fn requests_for(
    doc: &Value,
    method: &str,
    template: &str,
    stores: &[String],
    keys: &'static [&'static str],
) -> BoxedStrategy<Request> {
    let op = &doc["paths"][template][method];
    let mut params: Vec<BoxedStrategy<Option<(String, String, String)>>> = Vec::new();
    let conditional: Vec<String> = op["parameters"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p["in"] == "header")
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    for p in op["parameters"].as_array().into_iter().flatten() {
        let (name, place) = (p["name"].as_str().unwrap().to_owned(), p["in"].as_str().unwrap().to_owned());
        let schema = &p["schema"];
        let value: BoxedStrategy<String> = match (schema["type"].as_str(), name.as_str()) {
            (Some("integer"), _) => {
                let (min, max) = (schema["minimum"].as_i64().unwrap(), schema["maximum"].as_i64().unwrap());
                // The bounds, where an off-by-one would show, and anything between.
                prop_oneof![1 => Just(min), 1 => Just(max), 3 => min..=max]
                    .prop_map(|n| n.to_string())
                    .boxed()
            }
            (_, "id") if !stores.is_empty() => {
                prop_oneof![9 => proptest::sample::select(stores.to_vec()), 1 => string_of(schema)].boxed()
            }
            (_, "tenantId" | "projectId") => {
                prop_oneof![9 => Just(name[..1].to_owned()), 1 => string_of(schema)].boxed()
            }
            (_, "key") => prop_oneof![
                4 => proptest::sample::select(keys).prop_map(str::to_owned),
                1 => string_of(schema)
            ]
            .boxed(),
            _ => string_of(schema),
        };
        let entry = value.prop_map(move |v| Some((place.clone(), name.clone(), v)));
        params.push(if p["required"] == true {
            entry.boxed()
        } else {
            prop_oneof![Just(None), entry].boxed()
        });
    }
    let body: BoxedStrategy<Option<Value>> =
        match op["requestBody"]["content"]["application/json"]["schema"].as_object() {
            Some(_) => {
                let schema = resolve(doc, &op["requestBody"]["content"]["application/json"]["schema"]);
                // One closed object, or a oneOf of them.
                let variants: Vec<BoxedStrategy<Value>> = match schema["oneOf"].as_array() {
                    Some(one_of) => one_of
                        .iter()
                        .map(|s| match resolve(doc, s) {
                            null if null["type"] == "null" => Just(Value::Null).boxed(),
                            object => object_of(doc, object, keys),
                        })
                        .collect(),
                    None => vec![object_of(doc, schema, keys)],
                };
                let some = proptest::sample::select((0..variants.len()).collect::<Vec<_>>())
                    .prop_flat_map(move |i| variants[i].clone())
                    .prop_map(Some);
                if op["requestBody"]["required"] == true {
                    some.boxed()
                } else {
                    prop_oneof![Just(None), some].boxed()
                }
            }
            None => Just(None).boxed(),
        };
    let (method, template) = (method.to_owned(), template.to_owned());
    let secured = op["security"].is_array();
    (params, body, any::<bool>())
        .prop_map(move |(params, body, first_header)| {
            let mut req = Request {
                method: method.to_uppercase(),
                template: template.clone(),
                path: template.clone(),
                query: Vec::new(),
                headers: Vec::new(),
                body,
            };
            for (place, name, value) in params.into_iter().flatten() {
                match place.as_str() {
                    "path" => req.path = req.path.replace(&format!("{{{name}}}"), &value),
                    "query" => req.query.push((name, value)),
                    // At most one of If-Match and If-None-Match (a rule of the descriptions).
                    "header" if conditional.len() == 2 && req.headers.is_empty() => {
                        if (name == conditional[0]) == first_header {
                            req.headers.push((name, value));
                        }
                    }
                    "header" => {}
                    other => panic!("a parameter in {other}"),
                }
            }
            if secured {
                req.headers.push(("Authorization".into(), format!("Bearer {EVERYTHING}")));
            }
            req
        })
        .boxed()
}

/// Whether the document declares `status` for `method template`.
fn declared(doc: &Value, method: &str, template: &str, status: u16) -> bool {
    doc["paths"][template][method.to_lowercase()]["responses"].get(status.to_string()).is_some()
}

async fn send(c: &reqwest::Client, server: &TestServer, req: &Request) -> Reply {
    let mut r = c.request(req.method.parse().unwrap(), server.url(&req.path)).query(&req.query);
    for (k, v) in &req.headers {
        r = r.header(k, v);
    }
    if let Some(body) = &req.body {
        r = r.json(body);
    }
    Reply::from(r.send().await.unwrap()).await
}

#[test]
fn schema_valid_requests_are_accepted_and_every_answer_is_declared() {
    use credstore_server::auth::Action;
    let rt = runtime();
    let every = [Action::View, Action::Edit, Action::Purge, Action::Metrics, Action::Reveal];
    let server = rt.block_on(TestServer::start_with(|o| {
        o.tokens.push(token("all", EVERYTHING, &["*"], &["*"], &every))
    }));
    let c = client();
    let doc = rt.block_on(async {
        Reply::from(c.get(server.url("/openapi.json")).send().await.unwrap()).await.json()
    });
    let stores: Vec<String> = rt.block_on(get(&c, &server, ADMIN, &stores_path("t", "p"))).json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    // What each store declares off, as the words of its 422.
    let unsupported: BTreeMap<String, Vec<&str>> = server
        .stores
        .registry()
        .iter()
        .map(|s| {
            let caps = credstore_core::CredentialStoreExt::capabilities(s.as_ref());
            let mut off = Vec::new();
            if !caps.versions {
                off.push("does not support version history");
            }
            if !caps.expiry {
                off.push("does not support expiring credentials");
            }
            (s.info().id().to_string(), off)
        })
        .collect();
    let declared_off = |path: &str, reply: &Reply| {
        let store = path.split("/credential-stores/").nth(1).and_then(|r| r.split('/').next());
        let detail = reply.json()["detail"].as_str().unwrap_or_default().to_owned();
        reply.status == 422
            && store
                .and_then(|id| unsupported.get(id))
                .is_some_and(|off| off.iter().any(|words| detail.contains(words)))
    };
    const KEYS: &[&str] = &["k1", "k2", "..."];
    let mut operations = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            operations.push(requests_for(&doc, method, template, &stores, KEYS));
        }
    }
    assert!(operations.len() >= 9, "{}", operations.len());
    let strategy = proptest::sample::select((0..operations.len()).collect::<Vec<_>>())
        .prop_flat_map(move |i| operations[i].clone());
    let seen = std::sync::Mutex::new(BTreeMap::<(String, String), BTreeSet<u16>>::new());
    runner(500)
        .run(&strategy, |req| {
            let reply = rt.block_on(send(&c, &server, &req));
            seen.lock()
                .unwrap()
                .entry((req.method.clone(), req.template.clone()))
                .or_default()
                .insert(reply.status);
            let shown = || format!("{} {} {:?} {:?}", req.method, req.path, req.query, req.headers);
            prop_assert!(
                (![400, 413, 422].contains(&reply.status) || declared_off(&req.path, &reply))
                    && reply.status < 500,
                "a schema-valid request was refused: {} -> {}: {}",
                shown(),
                reply.status,
                reply.text
            );
            prop_assert!(
                declared(&doc, &req.method, &req.template, reply.status),
                "{} answered {}, which the document does not declare",
                shown(),
                reply.status
            );
            if reply.status >= 400 {
                assert_problem_shape(&reply, Some(&req.path));
            }
            Ok::<(), TestCaseError>(())
        })
        .unwrap();
    let seen = seen.into_inner().unwrap();
    eprintln!("statuses seen: {seen:?}");
    if std::env::var_os("CREDSTORE_FUZZ_RANDOM").is_some() {
        return;
    }
    // Every operation was exercised, and the deep answers were reached.
    assert_eq!(
        seen.len(),
        doc["paths"].as_object().unwrap().values().map(|i| i.as_object().unwrap().len()).sum::<usize>()
    );
    let all: BTreeSet<u16> = seen.values().flatten().copied().collect();
    for status in [200, 201, 204, 404, 412] {
        assert!(all.contains(&status), "no {status} among {seen:?}");
    }
}

#[test]
fn the_constraints_the_server_enforces_are_in_the_schema() {
    let rt = runtime();
    let server = rt.block_on(TestServer::start());
    let c = client();
    let doc = rt.block_on(async {
        Reply::from(c.get(server.url("/openapi.json")).send().await.unwrap()).await.json()
    });
    let creds = "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials";
    let param = |template: &str, method: &str, name: &str| {
        doc["paths"][template][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{method} {template}: no {name}"))["schema"]
            .clone()
    };
    // Every path parameter of every operation: the id pattern less the
    // dot-segments, 1 to 255 characters.
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for p in op["parameters"].as_array().into_iter().flatten().filter(|p| p["in"] == "path") {
                let s = &p["schema"];
                // A version is at most 128 characters.
                let max = if p["name"] == "version" { credstore_core::MAX_VERSION_LEN } else { 255 } as u64;
                assert_eq!(
                    (s["minLength"].as_u64(), s["maxLength"].as_u64()),
                    (Some(1), Some(max)),
                    "{method} {template} {p}"
                );
                let pattern = s["pattern"].as_str().unwrap();
                assert!(pattern.contains("a-zA-Z0-9_.-") && pattern.contains("\\.{3,}"), "{pattern}");
            }
        }
    }
    let limit = param(creds, "get", "limit");
    assert_eq!((limit["minimum"].as_i64(), limit["maximum"].as_i64()), (Some(1), Some(1000)));
    let schemas = &doc["components"]["schemas"];
    for name in ["CreateTextCredential", "CreateBinaryCredential"] {
        let meta = &schemas[name]["properties"]["metadata"];
        assert_eq!(meta["maxProperties"], credstore_core::MAX_METADATA_ENTRIES, "{name}");
        assert_eq!(meta["propertyNames"]["minLength"], 1);
        assert_eq!(meta["propertyNames"]["maxLength"], credstore_core::MAX_METADATA_KEY_BYTES);
        assert_eq!(meta["propertyNames"]["pattern"], "^[a-zA-Z0-9_.-]+$");
        assert_eq!(meta["additionalProperties"]["maxLength"], credstore_core::MAX_METADATA_VALUE_BYTES);
        assert_eq!(schemas[name]["additionalProperties"], false);
    }
    assert_eq!(
        schemas["CreateTextCredential"]["properties"]["value"]["maxLength"],
        credstore_core::MAX_VALUE_BYTES
    );
    // The three requests that were schema-valid but refused are schema-invalid now.
    let creds_path = creds_path("t", "p", "memory-default");
    let r = get(&c, &server, ADMIN, &format!("{creds_path}?limit=0")).await_in(&rt);
    assert_eq!(r.status, 422);
    assert!(limit["minimum"].as_i64().unwrap() > 0);
    let r = rt.block_on(create(
        &c,
        &server,
        ADMIN,
        &creds_path,
        json!({"key": "k", "value": "v", "metadata": {"": "x"}}),
    ));
    assert_eq!(r.status, 422);
    assert_eq!(schemas["CreateTextCredential"]["properties"]["metadata"]["propertyNames"]["minLength"], 1);
    let r =
        rt.block_on(create(&c, &server, ADMIN, &creds_path, json!({"key": "k", "value": "v", "extra": 1})));
    assert_eq!(r.status, 400);
}

/// `block_on` for a future, so a test reads top to bottom.
trait AwaitIn: std::future::Future + Sized {
    fn await_in(self, rt: &tokio::runtime::Runtime) -> Self::Output {
        rt.block_on(self)
    }
}

impl<F: std::future::Future> AwaitIn for F {}
