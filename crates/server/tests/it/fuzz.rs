//! Property tests over real HTTP: generated paths, headers and bodies never
//! produce a 5xx, every error is the problem+json of the Credential Stores
//! API, and every answer of a documented operation is declared for it in
//! `/openapi.json`.

use crate::util::harness;
use crate::util::property;

use std::collections::BTreeMap;

use harness::*;
use property::{runner, runtime};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Value};

/// The server's OpenAPI document.
fn openapi(rt: &tokio::runtime::Runtime, server: &TestServer) -> Value {
    rt.block_on(async {
        Reply::from(client().get(server.url("/openapi.json")).send().await.unwrap()).await.json()
    })
}

/// Percent-encodes every byte that is not unreserved.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9._-]{1,12}",
        1 => Just(".".to_owned()),
        1 => Just("..".to_owned()),
        1 => Just("%2E%2E".to_owned()),
        1 => Just(String::new()),
        1 => Just("x".repeat(300)),
        2 => any::<String>().prop_map(|s| encode(&s.chars().take(20).collect::<String>())),
        2 => "[a-zA-Z0-9._~!$&'()*+,;=:@-]{0,20}",
        1 => "[a-z%]{1,6}",
    ]
}

fn id_segment() -> impl Strategy<Value = String> {
    prop_oneof![6 => "[a-zA-Z0-9._-]{1,12}", 1 => segment()]
}

fn store_segment() -> impl Strategy<Value = String> {
    prop_oneof![3 => Just("memory-default".to_owned()), 3 => Just("sqlite-default".to_owned()), 1 => segment()]
}

fn path() -> impl Strategy<Value = String> {
    let depth = prop_oneof![2 => Just(0usize), 4 => Just(1), 3 => Just(2), 1 => Just(3)];
    let manage =
        (id_segment(), id_segment(), store_segment(), id_segment(), depth).prop_map(|(t, p, s, k, depth)| {
            let mut path = format!("/manage/tenants/{t}/projects/{p}/credential-stores");
            if depth >= 1 {
                path.push_str(&format!("/{s}/credentials"));
            }
            if depth >= 2 {
                path.push_str(&format!("/{k}"));
            }
            if depth == 3 {
                path.push('/');
            }
            path
        });
    let generic = proptest::collection::vec(segment(), 0..6).prop_map(|segs| format!("/{}", segs.join("/")));
    let fixed = prop_oneof![Just("/healthz"), Just("/readyz"), Just("/openapi.json"), Just("/manage")]
        .prop_map(str::to_owned);
    let query = prop_oneof![
        3 => Just(String::new()),
        1 => "(limit=[0-9a-z-]{0,6}|cursor=[0-9a-z%]{0,12}|prefix=[a-z%.]{0,8})(&limit=[0-9]{0,5})?",
        1 => any::<String>().prop_map(|s| format!("x={}", encode(&s))),
    ];
    (prop_oneof![6 => manage, 2 => generic, 1 => fixed], query).prop_map(|(p, q)| {
        if q.is_empty() {
            p
        } else {
            format!("{p}?{q}")
        }
    })
}

/// Header names that change the HTTP framing or the connection, which the
/// harness controls.
const RESERVED: [&str; 11] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "expect",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "http2-settings",
];

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let auth = prop_oneof![
        6 => Just(Some(format!("Bearer {ADMIN}"))),
        1 => Just(None),
        1 => "[ -~]{0,40}".prop_map(Some),
        1 => Just(Some(format!("bearer  {ADMIN}  "))),
        1 => Just(Some("Bearer".to_owned())),
    ];
    let content_type = prop_oneof![
        5 => Just(Some("application/json".to_owned())),
        1 => Just(None),
        1 => Just(Some("text/plain".to_owned())),
        1 => Just(Some("application/json; charset=latin1".to_owned())),
        1 => "[ -~]{0,30}".prop_map(Some),
    ];
    let request_id = prop_oneof![Just(None), "[ -~]{0,150}".prop_map(Some)];
    let others = proptest::collection::vec(("[a-zA-Z][a-zA-Z0-9-]{0,15}", "[!-~]([ -~]{0,38}[!-~])?"), 0..4);
    (auth, content_type, request_id, others).prop_map(|(auth, ct, rid, others)| {
        let mut out = Vec::new();
        if let Some(a) = auth {
            out.push(("Authorization".to_owned(), a.trim().to_owned()));
        }
        if let Some(c) = ct {
            out.push(("Content-Type".to_owned(), c.trim().to_owned()));
        }
        if let Some(r) = rid {
            out.push(("X-Request-ID".to_owned(), r.trim().to_owned()));
        }
        for (k, v) in others {
            if !RESERVED.contains(&k.to_ascii_lowercase().as_str()) {
                out.push((k, v));
            }
        }
        out
    })
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<String>().prop_map(Value::String),
        "[a-zA-Z0-9._-]{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z ]{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let key = prop_oneof![
        3 => "[a-zA-Z0-9._-]{1,20}".prop_map(Value::String),
        1 => json_value(),
    ];
    let value = prop_oneof![4 => any::<String>().prop_map(Value::String), 1 => json_value()];
    let metadata = prop_oneof![
        2 => Just(None),
        2 => proptest::collection::btree_map("[a-zA-Z0-9._ -]{0,10}", any::<String>(), 0..4)
            .prop_map(|m| Some(json!(m))),
        1 => json_value().prop_map(Some),
    ];
    let extra = prop_oneof![9 => Just(false), 1 => Just(true)];
    let object =
        (proptest::option::weighted(0.9, key), proptest::option::weighted(0.9, value), metadata, extra)
            .prop_map(|(k, v, m, extra)| {
                let mut o = serde_json::Map::new();
                if let Some(k) = k {
                    o.insert("key".into(), k);
                }
                if let Some(v) = v {
                    o.insert("value".into(), v);
                }
                if let Some(m) = m {
                    o.insert("metadata".into(), m);
                }
                if extra {
                    o.insert("extra".into(), json!(1));
                }
                serde_json::to_vec(&Value::Object(o)).unwrap()
            });
    prop_oneof![
        4 => object,
        1 => proptest::collection::vec(any::<u8>(), 0..200),
        1 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => Just(Vec::new()),
    ]
}

fn method() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        3 => Just("GET"),
        4 => Just("POST"),
        2 => Just("DELETE"),
        1 => Just("PUT"),
        1 => Just("PATCH"),
        1 => Just("HEAD"),
        1 => Just("OPTIONS"),
    ]
}

/// The template of the documented operation `path` is routed to, if any:
/// each `{param}` matches one non-empty segment.
fn template_of<'d>(doc: &'d Value, path: &str) -> Option<&'d str> {
    let segments: Vec<&str> = path.split('?').next().unwrap().split('/').collect();
    doc["paths"].as_object().unwrap().keys().map(String::as_str).find(|template| {
        let parts: Vec<&str> = template.split('/').collect();
        parts.len() == segments.len()
            && parts
                .iter()
                .zip(&segments)
                .all(|(t, s)| if t.starts_with('{') { !s.is_empty() } else { t == s })
    })
}

fn check(method: &str, path: &str, reply: &Reply, doc: &Value) -> Result<(), TestCaseError> {
    prop_assert!(reply.status < 500, "{method} {path} -> {}: {}", reply.status, reply.text);
    // Every answer of a documented operation is declared for it.
    let routed = reply.status != 405 && !reply.text.contains("no such route");
    if let (Some(template), true, false) = (template_of(doc, path), routed, method == "HEAD") {
        let responses = &doc["paths"][template][method.to_lowercase()]["responses"];
        prop_assert!(
            responses.get(reply.status.to_string()).is_some(),
            "{method} {path} -> {}, which the document does not declare for {template}: {}",
            reply.status,
            reply.text
        );
    }
    prop_assert!(!reply.request_id().is_empty(), "{method} {path}: no X-Request-ID");
    if reply.status >= 400 {
        prop_assert!(
            reply.content_type().starts_with("application/problem+json"),
            "{method} {path} -> {} {:?}: {}",
            reply.status,
            reply.content_type(),
            reply.text
        );
        if method != "HEAD" {
            let instance = path.split('?').next().unwrap();
            assert_problem_shape(reply, Some(instance));
        }
    } else if method != "HEAD" && reply.status != 204 {
        prop_assert!(
            reply.content_type().starts_with("application/json"),
            "{method} {path}: {:?}",
            reply.content_type()
        );
        prop_assert!(serde_json::from_str::<Value>(&reply.text).is_ok());
    }
    Ok(())
}

#[test]
fn generated_requests_never_get_a_5xx_or_a_non_problem_error() {
    let rt = runtime();
    let server = rt.block_on(TestServer::start_with(|o| o.settings.body_limit = 4096));
    let doc = openapi(&rt, &server);
    let random = (method(), path().boxed(), headers().boxed(), body().boxed()).boxed();
    // Mostly well-formed requests over a few ids, so the deep paths (stores,
    // bodies, existing keys) are reached too.
    let pool = |ids: &'static [&'static str]| prop_oneof![3 => proptest::sample::select(ids).prop_map(str::to_owned), 1 => id_segment()];
    let small_body = (pool(&["k1", "k2"]), any::<String>())
        .prop_map(|(k, v)| serde_json::to_vec(&json!({"key": k, "value": v})).unwrap());
    let big_body = (1usize..3)
        .prop_map(|n| json!({"key": "k1", "value": "x".repeat(n * 4096)}).to_string().into_bytes());
    let plausible_body =
        prop_oneof![4 => small_body.boxed(), 2 => body().boxed(), 1 => big_body.boxed()].boxed();
    let json_ct = prop_oneof![6 => Just(true), 1 => Just(false)];
    let plausible = (
        0..4usize,
        pool(&["t1", "t2"]),
        pool(&["p1"]),
        store_segment(),
        pool(&["k1", "k2"]),
        plausible_body,
        json_ct,
    )
        .prop_map(|(op, t, p, s, k, body, json_ct)| {
            let base = format!("/manage/tenants/{t}/projects/{p}/credential-stores");
            let (method, path) = match op {
                0 => ("GET", base),
                1 => ("POST", format!("{base}/{s}/credentials")),
                2 => ("GET", format!("{base}/{s}/credentials/{k}")),
                _ => ("DELETE", format!("{base}/{s}/credentials/{k}")),
            };
            let mut headers = vec![("Authorization".to_owned(), format!("Bearer {ADMIN}"))];
            if json_ct {
                headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
            }
            (method, path, headers, body)
        })
        .boxed();
    let strategy = prop_oneof![random, plausible];
    let seen = std::sync::Mutex::new(BTreeMap::<u16, usize>::new());
    runner(400)
        .run(&strategy, |(method, path, headers, body)| {
            let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let head = raw_head(method, &path, &hs, body.len());
            let reply = rt.block_on(raw_request(server.addr, &head, &body));
            *seen.lock().unwrap().entry(reply.status).or_default() += 1;
            check(method, &path, &reply, &doc)
        })
        .unwrap();
    // The generator reaches deep: every class of answer shows up.
    let seen = seen.into_inner().unwrap();
    eprintln!("statuses seen: {seen:?}");
    if std::env::var_os("CREDSTORE_FUZZ_RANDOM").is_some() {
        return;
    }
    for status in [200, 400, 401, 404, 405, 413, 422] {
        assert!(seen.contains_key(&status), "no {status} among {seen:?}");
    }
    assert!(seen.contains_key(&201) && seen.contains_key(&204), "{seen:?}");
}

#[test]
fn generated_bodies_on_the_create_route() {
    let rt = runtime();
    let server = rt.block_on(TestServer::start());
    let doc = openapi(&rt, &server);
    let c = client();
    let strategy = (prop_oneof![Just("memory-default"), Just("sqlite-default")], body(), any::<bool>());
    runner(300)
        .run(&strategy, |(store, body, json_ct)| {
            let path = creds_path("t", "p", store);
            let ct = if json_ct { "application/json" } else { "text/plain" };
            let reply = rt.block_on(async {
                let req = c
                    .post(server.url(&path))
                    .bearer_auth(ADMIN)
                    .header("content-type", ct)
                    .body(body.clone());
                Reply::from(req.send().await.unwrap()).await
            });
            check("POST", &path, &reply, &doc)?;
            if !json_ct {
                prop_assert_eq!(reply.status, 400);
            }
            if reply.status < 300 {
                // It was valid: key, value and metadata as sent, and the metadata reads back.
                let sent: Value = serde_json::from_slice(&body).unwrap();
                let key = sent["key"].as_str().unwrap();
                if key == "." || key == ".." {
                    // A valid key, but a client drops it from a URL.
                    return Ok(());
                }
                let got = rt.block_on(get(&c, &server, ADMIN, &cred_path("t", "p", store, key)));
                prop_assert_eq!(got.status, 200);
                let expected = match &sent["metadata"] {
                    Value::Null => json!({}),
                    m => m.clone(),
                };
                prop_assert_eq!(&got.json()["data"]["metadata"], &expected);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn valid_credentials_round_trip_their_metadata() {
    let rt = runtime();
    let server = rt.block_on(TestServer::start());
    let c = client();
    let meta_value = proptest::string::string_regex("[^\\p{Cc}]{0,30}").unwrap();
    let strategy = (
        // `.` and `..` are valid keys, but a client drops them from a URL.
        "[a-zA-Z0-9._-]{1,40}".prop_filter("a dot-segment", |k| k != "." && k != ".."),
        any::<String>(),
        proptest::collection::btree_map("[a-zA-Z0-9._-]{1,20}", meta_value, 0..5),
        "[a-zA-Z0-9_-]{1,10}",
    );
    runner(150)
        .run(
            &strategy,
            |(key, value, metadata, tenant): (String, String, BTreeMap<String, String>, String)| {
                let path = creds_path(&tenant, "p", "sqlite-default");
                let reply = rt.block_on(create(
                    &c,
                    &server,
                    ADMIN,
                    &path,
                    json!({"key": key, "value": value, "metadata": metadata}),
                ));
                prop_assert!(reply.status == 201 || reply.status == 200, "{}", reply.text);
                prop_assert_eq!(reply.json()["data"]["key"].clone(), json!(key));
                let got =
                    rt.block_on(get(&c, &server, ADMIN, &cred_path(&tenant, "p", "sqlite-default", &key)));
                prop_assert_eq!(got.status, 200);
                prop_assert_eq!(got.json()["data"]["metadata"].clone(), json!(metadata));
                if value.chars().count() >= 16 && !metadata.values().any(|v| v.contains(&value)) {
                    prop_assert!(
                        !got.text.contains(&serde_json::to_string(&value).unwrap()),
                        "the value is never returned"
                    );
                }
                Ok(())
            },
        )
        .unwrap();
}
