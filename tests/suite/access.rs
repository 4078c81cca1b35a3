//! Access control over HTTP (issue 16): tokens and scopes, name patterns, sensitivity
//! classes through every read path (on-demand inputs, Feast reads, statistics, the
//! page, serving-log exports), denial by default, expired and malformed tokens, a
//! token file changed while requests run, the audit log, server-side files, and the
//! cross-team reuse rule.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use featstore::auth::token;
use featstore::registry::file::parse_registry_toml;
use featstore::server::ServerConfig;
use featstore::{FeatureStore, LoadRequest};

use super::common::{TestServer, json, small_config};

const REGISTRY: &str = r#"
[[feature]]
name = "user_age"
entity_type = "user"
group = "users"
owner = "profile"
dtype = "int64"
sensitivity = "pii"

[[feature]]
name = "user_clicks"
entity_type = "user"
group = "users"
owner = "profile"
dtype = "int64"

[[feature]]
name = "product_clicks"
entity_type = "product"
group = "products"
owner = "ranking"
dtype = "int64"
sensitivity = "public"
reuse_teams = ["search"]

[[feature]]
name = "product_views"
entity_type = "product"
group = "products"
owner = "ranking"
dtype = "int64"
sensitivity = "public"

[[on_demand]]
name = "clicks_per_year"
owner = "profile"
op = "ratio"
inputs = ["user_clicks", "user_age"]
default = 0.0

[[on_demand]]
name = "product_ctr"
owner = "ranking"
op = "ratio"
inputs = ["product_clicks", "product_views"]
default = 0.0
"#;

/// The principals: (id, scopes, read, push, max class, expires).
struct Spec {
    id: &'static str,
    team: &'static str,
    scopes: &'static str,
    read: &'static str,
    push: &'static str,
    max: &'static str,
    expires: Option<&'static str>,
}

const PRINCIPALS: [Spec; 7] = [
    Spec {
        id: "reader",
        team: "ranking",
        scopes: r#""read""#,
        read: r#""product_*", "user_*""#,
        push: "",
        max: "internal",
        expires: None,
    },
    Spec {
        id: "pii",
        team: "profile",
        scopes: r#""read""#,
        read: r#""*""#,
        push: "",
        max: "pii",
        expires: None,
    },
    Spec {
        id: "pusher",
        team: "ranking",
        scopes: r#""push""#,
        read: "",
        push: r#""group:products""#,
        max: "public",
        expires: None,
    },
    Spec {
        id: "ops",
        team: "ranking",
        scopes: r#""admin", "read""#,
        read: r#""product_*""#,
        push: "",
        max: "internal",
        expires: None,
    },
    Spec {
        id: "auditor",
        team: "profile",
        scopes: r#""admin""#,
        read: r#""*""#,
        push: "",
        max: "pii",
        expires: None,
    },
    Spec {
        id: "old",
        team: "ranking",
        scopes: r#""read""#,
        read: r#""*""#,
        push: "",
        max: "pii",
        expires: Some("2001-01-01T00:00:00Z"),
    },
    Spec {
        id: "nothing",
        team: "ranking",
        scopes: r#""read""#,
        read: "",
        push: "",
        max: "pii",
        expires: None,
    },
];

/// A stable token per principal id (the tests need to know them).
fn token_of(id: &str) -> String {
    format!("fst.{id}.{}", token::to_hex(&token::digest(id)))
}

fn token_file_text(specs: &[&Spec]) -> String {
    let mut text = String::new();
    for s in specs {
        text.push_str(&format!(
            "[[principal]]\nid = \"{}\"\nteam = \"{}\"\ntoken_sha256 = \"{}\"\nscopes = [{}]\nread = [{}]\npush = [{}]\nmax_sensitivity = \"{}\"\n",
            s.id,
            s.team,
            token::to_hex(&token::digest(&token_of(s.id))),
            s.scopes,
            s.read,
            s.push,
            s.max
        ));
        if let Some(e) = s.expires {
            text.push_str(&format!("expires = \"{e}\"\n"));
        }
    }
    text
}

/// Replaces the token file atomically (write, then rename).
fn write_token_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write token file");
    std::fs::rename(&tmp, path).expect("rename token file");
}

struct Fixture {
    dir: tempfile::TempDir,
    server: TestServer,
    tokens: PathBuf,
    imports: PathBuf,
    exports: PathBuf,
}

fn store(dir: &Path) -> FeatureStore {
    let mut config = small_config();
    config.serving_log.enabled = true;
    config.serving_log.flush_interval_ms = 20;
    let store = FeatureStore::open(dir.join("store"), config).expect("open");
    store
        .apply_objects(parse_registry_toml(REGISTRY, "registry").expect("parses"))
        .expect("apply");
    for (group, text) in [
        (
            "users",
            "entity_id,event_time,user_age,user_clicks\nu1,1700000000000,31,62\n",
        ),
        (
            "products",
            "entity_id,event_time,product_clicks,product_views\np1,1700000000000,5,100\n",
        ),
    ] {
        let path = dir.join(format!("{group}.csv"));
        std::fs::write(&path, text).expect("write");
        store
            .load(&LoadRequest::new(group, &path), &|_| {})
            .expect("load");
        // A second version, so that rollback has somewhere to go.
        store
            .load(&LoadRequest::new(group, &path), &|_| {})
            .expect("load");
    }
    store
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("dir");
    let tokens = dir.path().join("tokens.toml");
    let all: Vec<&Spec> = PRINCIPALS.iter().collect();
    write_token_file(&tokens, &token_file_text(&all));
    let imports = dir.path().join("imports");
    let exports = dir.path().join("exports");
    std::fs::create_dir_all(&imports).expect("mkdir");
    std::fs::create_dir_all(&exports).expect("mkdir");
    let config = ServerConfig {
        token_file: Some(tokens.clone()),
        import_dirs: vec![imports.clone()],
        export_dirs: vec![exports.clone()],
        ..ServerConfig::default()
    };
    let server = TestServer::start_with(Arc::new(store(dir.path())), config);
    // Answered only once the server runs, so its token file has been read.
    assert_eq!(super::common::get(&server.url("/healthz")).0, 200);
    Fixture {
        dir,
        server,
        tokens,
        imports,
        exports,
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// (status, body, WWW-Authenticate) of a request with `Authorization: Bearer token`.
fn call(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<(&str, &[u8])>,
) -> (u16, String, Option<String>) {
    let agent = agent();
    let auth = token.map(|t| format!("Bearer {t}"));
    let result = match (method, body) {
        ("GET", _) => {
            let mut r = agent.get(url);
            if let Some(a) = &auth {
                r = r.header("authorization", a);
            }
            r.call()
        }
        (_, body) => {
            let mut r = agent.post(url);
            if let Some(a) = &auth {
                r = r.header("authorization", a);
            }
            match body {
                Some((content_type, bytes)) => r.header("content-type", content_type).send(bytes),
                None => r.send_empty(),
            }
        }
    };
    let mut response = result.expect("request");
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("body");
    (status, text, challenge)
}

fn get_as(f: &Fixture, id: Option<&str>, path: &str) -> (u16, String) {
    let token = id.map(token_of);
    let (status, body, _) = call("GET", &f.server.url(path), token.as_deref(), None);
    (status, body)
}

fn post_as(f: &Fixture, id: &str, path: &str, body: &str) -> (u16, String) {
    let (status, body, _) = call(
        "POST",
        &f.server.url(path),
        Some(&token_of(id)),
        Some(("application/json", body.as_bytes())),
    );
    (status, body)
}

fn error_of(body: &str) -> String {
    json(body)["error"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn everything_is_denied_unless_a_rule_allows_it() {
    let f = fixture();
    let get = "/v1/features/product/p1?names=product_clicks";
    // No token, a malformed one, a wrong secret, an unknown principal, an expired one.
    let (status, body, challenge) = call("GET", &f.server.url(get), None, None);
    assert_eq!(status, 401, "{body}");
    assert!(error_of(&body).contains("Authorization: Bearer"), "{body}");
    assert_eq!(challenge.as_deref(), Some("Bearer realm=\"featstore\""));
    for (bad, code) in [
        ("not-a-token", "invalid_request"),
        ("fst.reader", "invalid_request"),
        (&*format!("{}0", token_of("reader")), "invalid_token"),
        (&*token_of("stranger"), "invalid_token"),
        (&*token_of("old"), "invalid_token"),
    ] {
        let (status, body, challenge) = call("GET", &f.server.url(get), Some(bad), None);
        assert_eq!(status, 401, "{bad}: {body}");
        assert!(
            challenge.as_deref().is_some_and(|c| c.contains(code)),
            "{bad}: {challenge:?}"
        );
    }
    let (_, body) = get_as(&f, Some("old"), get);
    assert!(error_of(&body).contains("expired"), "{body}");
    // A principal with read scope but no pattern reads nothing.
    let (status, body) = get_as(&f, Some("nothing"), get);
    assert_eq!(status, 403, "{body}");
    assert!(error_of(&body).contains("product_clicks@1"), "{body}");
    // Health checks, metrics and the API description need no token.
    for open in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        assert_eq!(get_as(&f, None, open).0, 200, "{open}");
    }
    let (_, metrics) = get_as(&f, None, "/metrics");
    assert!(
        metrics.contains("featstore_token_file_principals 7"),
        "{metrics}"
    );
}

#[test]
fn scopes_and_patterns_decide_each_route() {
    let f = fixture();
    // Read: patterns and the sensitivity class.
    let (status, body) = get_as(
        &f,
        Some("reader"),
        "/v1/features/product/p1?names=product_clicks,product_views",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["features"][0]["value"], 5);
    assert_eq!(
        get_as(&f, Some("reader"), "/v1/features/user/u1?names=user_clicks").0,
        200
    );
    let (status, body) = get_as(
        &f,
        Some("reader"),
        "/v1/features/user/u1?names=user_clicks,user_age",
    );
    assert_eq!(status, 403, "a denied feature is a 403, not a null: {body}");
    let message = error_of(&body);
    assert!(
        message.contains("user_age@1") && message.contains("pii"),
        "{message}"
    );
    // Asked again (the plan is cached): the same answer.
    assert_eq!(
        get_as(
            &f,
            Some("reader"),
            "/v1/features/user/u1?names=user_clicks,user_age"
        )
        .0,
        403
    );
    let (status, body) = get_as(&f, Some("pii"), "/v1/features/user/u1?names=user_age");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["features"][0]["value"], 31);
    // Registry listings show definitions to any reader, sensitive ones included.
    let (status, body) = get_as(&f, Some("reader"), "/v1/feature-definitions?group=users");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("user_age") && !body.contains("\"value\""),
        "{body}"
    );

    // Push: scope and patterns.
    let push = |id: &str, feature: &str| {
        let body = format!(
            r#"{{"events":[{{"entity_type":"product","entity_id":"p7","event_time":1700000000001,"features":{{"{feature}":3}}}}]}}"#
        );
        post_as(&f, id, "/v1/push", &body)
    };
    assert_eq!(push("pusher", "product_clicks").0, 200);
    let (status, body) = push("reader", "product_clicks");
    assert_eq!(status, 403, "{body}");
    assert!(error_of(&body).contains("`push` scope"), "{body}");
    let user_push = r#"{"events":[{"entity_type":"user","entity_id":"u7","event_time":1700000000001,"features":{"user_clicks":3}}]}"#;
    let (status, body) = post_as(&f, "pusher", "/v1/push", user_push);
    assert_eq!(status, 403, "{body}");
    assert!(error_of(&body).contains("user_clicks@1"), "{body}");
    assert!(
        get_as(&f, Some("pii"), "/v1/features/user/u7?names=user_clicks")
            .1
            .contains("not_found"),
        "a denied push applies nothing"
    );
    // Feast pushes take the same rules.
    let feast_push = r#"{"push_source_name":"users","df":{"user_id":["u8"],"user_clicks":[1],"event_timestamp":["2025-01-01T00:00:00Z"]}}"#;
    let (status, body) = post_as(&f, "pusher", "/push", feast_push);
    assert_eq!(status, 403, "{body}");
    // A pusher may not read.
    assert_eq!(
        get_as(
            &f,
            Some("pusher"),
            "/v1/features/product/p1?names=product_clicks"
        )
        .0,
        403
    );

    // Admin.
    assert_eq!(
        post_as(&f, "reader", "/v1/groups/products/rollback", "").0,
        403
    );
    let (status, body) = post_as(&f, "ops", "/v1/groups/products/rollback", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        post_as(&f, "pii", "/v1/groups/products/versions/2/activate", "").0,
        403
    );
    assert_eq!(
        post_as(&f, "ops", "/v1/groups/products/versions/2/activate", "").0,
        200
    );
    assert_eq!(get_as(&f, Some("reader"), "/v1/audit").0, 403);
}

#[test]
fn sensitivity_holds_on_every_read_path() {
    let f = fixture();
    let rank = |id: &str, features: &str| {
        let body = format!(
            r#"{{"context":{{"user":"u1"}},"candidates":{{"entity_type":"product","ids":["p1"]}},"features":[{features}]}}"#
        );
        post_as(&f, id, "/v1/rank", &body)
    };
    assert_eq!(rank("reader", r#""product_ctr", "user_clicks""#).0, 200);
    // On-demand inputs: a value computed from a pii feature is pii.
    let (status, body) = rank("reader", r#""product_ctr", "clicks_per_year""#);
    assert_eq!(status, 403, "{body}");
    let message = error_of(&body);
    assert!(
        message.contains("clicks_per_year@1") && message.contains("user_age@1"),
        "{message}"
    );
    let (status, body) = rank("pii", r#""clicks_per_year""#);
    assert_eq!(status, 200, "{body}");
    // The binary encoding goes through the same plan.
    let (status, _, _) = call(
        "POST",
        &f.server.url("/v1/rank"),
        Some(&token_of("reader")),
        Some((
            "application/json",
            br#"{"context":{"user":"u1"},"candidates":{"entity_type":"product","ids":["p1"]},"features":["user_age"]}"#,
        )),
    );
    assert_eq!(status, 403);
    // Feast reads.
    let feast = r#"{"entities":{"user_id":["u1"]},"features":["users:user_age"]}"#;
    let (status, body) = post_as(&f, "reader", "/get-online-features", feast);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("user_age"), "{body}");
    assert_eq!(post_as(&f, "pii", "/get-online-features", feast).0, 200);
    // Statistics and the group's page are computed from values.
    assert_eq!(
        get_as(&f, Some("reader"), "/v1/groups/users/versions/1/stats").0,
        403
    );
    assert_eq!(
        get_as(&f, Some("pii"), "/v1/groups/users/versions/1/stats").0,
        200
    );
    assert_eq!(
        get_as(&f, Some("reader"), "/v1/groups/users/versions").0,
        403
    );
    assert_eq!(
        get_as(&f, Some("reader"), "/v1/groups/products/versions").0,
        200
    );
    assert_eq!(get_as(&f, Some("reader"), "/ui?group=users").0, 403);
    assert_eq!(get_as(&f, Some("reader"), "/ui?group=products").0, 200);
    assert_eq!(get_as(&f, Some("reader"), "/ui").0, 200);
    // Serving-log exports: admin, and every exported feature readable by the caller.
    let export = |id: &str, out: &Path| {
        let job = serde_json::json!({ "out": out, "from": "0" }).to_string();
        post_as(&f, id, "/v1/serving-log/exports", &job)
    };
    // Wait for the log to hold the reads above (it is written in the background).
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = f.exports.join("by-auditor");
        let (status, body) = export("auditor", &out);
        assert_eq!(status, 200, "{body}");
        if json(&body)["rows"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "the reads were never logged"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = f.exports.join("by-ops");
    let (status, body) = export("ops", &out);
    assert_eq!(status, 403, "the log holds reads of user features: {body}");
    assert!(error_of(&body).contains("`user_"), "{body}");
    assert!(
        !out.exists() || out.read_dir().expect("dir").next().is_none(),
        "nothing left behind"
    );
    let (status, body) = export("pii", &out);
    assert_eq!(status, 403, "export needs admin: {body}");
    let (status, body) = export("ops", &f.dir.path().join("elsewhere"));
    assert_eq!(status, 403, "{body}");
    assert!(error_of(&body).contains("export directories"), "{body}");
}

#[test]
fn a_token_file_changed_while_requests_run() {
    let f = fixture();
    let url = f.server.url("/v1/features/product/p1?names=product_clicks");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let url = url.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut statuses = std::collections::BTreeMap::new();
            for _ in 0..20_000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let (status, _, _) = call("GET", &url, Some(&token_of("reader")), None);
                *statuses.entry(status).or_insert(0u32) += 1;
            }
            statuses
        })
    };
    // Rotate: `reader` leaves, `reader2` (same rules) arrives.
    let mut specs: Vec<&Spec> = PRINCIPALS.iter().filter(|s| s.id != "reader").collect();
    let reader2 = Spec {
        id: "reader2",
        ..PRINCIPALS[0]
    };
    specs.push(&reader2);
    write_token_file(&f.tokens, &token_file_text(&specs));
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while call("GET", &url, Some(&token_of("reader2")), None).0 != 200 {
        assert!(
            std::time::Instant::now() < until,
            "the new token file was never applied"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let statuses = reader.join().expect("reader thread");
    assert!(
        statuses.keys().all(|s| *s == 200 || *s == 401),
        "every request answered by the old or the new file: {statuses:?}"
    );
    assert_eq!(call("GET", &url, Some(&token_of("reader")), None).0, 401);
    // A bad file keeps the principals in force, and says so in the metrics.
    write_token_file(&f.tokens, "[[principal]\nbroken");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, metrics) = get_as(&f, None, "/metrics");
        if metrics.contains("featstore_token_file_reloads_total{outcome=\"rejected\"} 1") {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "the bad file was never seen: {metrics}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(call("GET", &url, Some(&token_of("reader2")), None).0, 200);
    // Both reloads are in the audit log.
    let (status, body) = get_as(&f, Some("ops"), "/v1/audit");
    assert_eq!(status, 200, "{body}");
    let reloads: Vec<String> = json(&body)["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["action"] == "token_file_reload")
        .map(|r| r["outcome"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(reloads, ["ok", "refused"], "{body}");
}

#[test]
fn admin_actions_are_audited_with_principal_request_and_outcome() {
    let f = fixture();
    let (_, _, _) = call(
        "POST",
        &f.server.url("/v1/groups/products/rollback"),
        None,
        None,
    );
    let (status, _) = post_as(&f, "reader", "/v1/groups/products/rollback", "");
    assert_eq!(status, 403);
    let forced = r#"{"force": true, "by": "alice", "reason": "hotfix"}"#;
    let (status, body, _) = {
        let mut r = agent()
            .post(&f.server.url("/v1/groups/products/versions/1/activate"))
            .header("authorization", &format!("Bearer {}", token_of("ops")))
            .header("x-request-id", "req-forced-1")
            .header("content-type", "application/json")
            .send(forced.as_bytes())
            .expect("POST");
        (
            r.status().as_u16(),
            r.body_mut().read_to_string().expect("body"),
            (),
        )
    };
    assert_eq!(status, 200, "{body}");
    let (status, body) = get_as(&f, Some("ops"), "/v1/audit");
    assert_eq!(status, 200, "{body}");
    let page = json(&body);
    let records = page["records"].as_array().expect("records");
    let summary: Vec<(String, String, String)> = records
        .iter()
        .map(|r| {
            (
                r["principal"].as_str().unwrap_or_default().to_owned(),
                r["action"].as_str().unwrap_or_default().to_owned(),
                r["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let want = |p: &str, a: &str, o: &str| (p.to_owned(), a.to_owned(), o.to_owned());
    assert_eq!(
        summary,
        [
            want("unauthenticated", "rollback", "refused"),
            want("reader", "rollback", "refused"),
            want("ops", "activate", "ok"),
        ]
    );
    let forced = &records[2];
    assert_eq!(forced["request_id"], "req-forced-1");
    assert_eq!(forced["target"], "group=products version=1");
    assert_eq!(forced["detail"], "forced by alice: hotfix");
    assert_eq!(forced["team"], "ranking");
    assert!(forced["time_ms"].as_i64().unwrap_or(0) > 0);
    let (_, body) = get_as(&f, Some("ops"), "/v1/audit?after=2");
    assert_eq!(json(&body)["records"].as_array().map(Vec::len), Some(1));
    // The file is JSON lines, one record each.
    let text = std::fs::read_to_string(f.dir.path().join("store/audit/audit.log")).expect("log");
    assert_eq!(text.lines().count(), 3, "{text}");
}

#[test]
fn loads_read_only_inside_the_import_dirs_and_never_quote_a_file() {
    let f = fixture();
    let load = |input: &Path| {
        let body = serde_json::json!({ "input": input }).to_string();
        post_as(&f, "ops", "/v1/groups/products/loads", &body)
    };
    let secret = f.dir.path().join("secret.txt");
    std::fs::write(&secret, "root-password-hunter2\n").expect("write");
    let (status_outside, outside) = load(&secret);
    let (status_missing, missing) = load(&f.dir.path().join("missing.txt"));
    assert_eq!((status_outside, status_missing), (403, 403));
    assert_eq!(
        error_of(&outside).replace(&secret.display().to_string(), "P"),
        error_of(&missing).replace(&f.dir.path().join("missing.txt").display().to_string(), "P"),
        "an answer never tells whether a path outside exists"
    );
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&secret, f.imports.join("link.csv")).expect("symlink");
        assert_eq!(load(&f.imports.join("link.csv")).0, 403, "symlink escape");
    }
    // A file inside that is not an input: the answer names the problem, not the text.
    let bad = f.imports.join("bad.csv");
    std::fs::write(&bad, "root-password-hunter2\nsecond line\n").expect("write");
    let (status, body) = load(&bad);
    assert_eq!(status, 400, "{body}");
    assert!(!body.contains("hunter2"), "{body}");
    let cell = f.imports.join("cell.csv");
    std::fs::write(
        &cell,
        "entity_id,event_time,product_clicks,product_views\np1,1700000000000,hunter2,1\n",
    )
    .expect("write");
    let (status, body) = load(&cell);
    assert_eq!(status, 400, "{body}");
    assert!(
        !body.contains("hunter2") && body.contains("row 1"),
        "{body}"
    );
    // A good file inside loads; so does an uploaded body.
    let good = f.imports.join("good.csv");
    std::fs::write(
        &good,
        "entity_id,event_time,product_clicks,product_views\np1,1700000000000,6,100\n",
    )
    .expect("write");
    let (status, body) = load(&good);
    assert_eq!(status, 200, "{body}");
    let (status, body, _) = call(
        "POST",
        &f.server.url("/v1/groups/products/loads?activate=true"),
        Some(&token_of("ops")),
        Some((
            "text/csv",
            b"entity_id,event_time,product_clicks,product_views\np1,1700000000000,9,100\n",
        )),
    );
    assert_eq!(status, 200, "{body}");
    let (_, read) = get_as(
        &f,
        Some("reader"),
        "/v1/features/product/p1?names=product_clicks",
    );
    assert_eq!(json(&read)["features"][0]["value"], 9);
    // Loads need admin.
    let body = serde_json::json!({ "input": good }).to_string();
    assert_eq!(
        post_as(&f, "reader", "/v1/groups/products/loads", &body).0,
        403
    );
}

#[test]
fn a_restricted_feature_is_refused_to_other_teams_services() {
    let f = fixture();
    let service = |owner: &str, feature: &str| {
        format!(
            "{{\"service\":[{{\"name\":\"svc_{owner}\",\"owner\":\"{owner}\",\"features\":[\"{feature}\"]}}]}}"
        )
    };
    // The store refuses another team's service, with or without a token file.
    let store = store(&f.dir.path().join("open"));
    let refused = store
        .apply_objects(
            parse_registry_toml(
                "[[service]]\nname = \"ads_v1\"\nowner = \"ads\"\nfeatures = [\"product_clicks\"]\n",
                "svc",
            )
            .expect("parses"),
        )
        .expect_err("ads may not reuse product_clicks");
    assert!(
        refused.to_string().contains("product_clicks@1"),
        "{refused}"
    );
    // Through an on-demand feature too.
    let refused = store
        .apply_objects(
            parse_registry_toml(
                "[[service]]\nname = \"ads_v1\"\nowner = \"ads\"\nfeatures = [\"product_ctr\"]\n",
                "svc",
            )
            .expect("parses"),
        )
        .expect_err("ads may not reuse it through product_ctr");
    assert!(refused.to_string().contains("product_ctr@1"), "{refused}");
    for allowed in ["search", "ranking"] {
        store
            .apply_objects(
                parse_registry_toml(
                    &format!("[[service]]\nname = \"{allowed}_v1\"\nowner = \"{allowed}\"\nfeatures = [\"product_clicks\", \"product_views\"]\n"),
                    "svc",
                )
                .expect("parses"),
            )
            .expect("the owner and the allowed team may");
    }
    // Over HTTP a principal registers for its own team only.
    let (status, body) = post_as(
        &f,
        "ops",
        "/v1/registry",
        &service("search", "product_clicks"),
    );
    assert_eq!(status, 403, "{body}");
    let (status, body) = post_as(
        &f,
        "ops",
        "/v1/registry",
        &service("ranking", "product_clicks"),
    );
    assert_eq!(status, 200, "{body}");
    let profile_feature = r#"[{"name":"user_age","entity_type":"user","group":"users","owner":"ranking","dtype":"int64","sensitivity":"public"}]"#;
    let (status, body) = post_as(&f, "ops", "/v1/feature-definitions", profile_feature);
    assert_eq!(
        status, 403,
        "another team's feature is not ops' to change: {body}"
    );
}

#[test]
fn an_open_server_refuses_a_non_loopback_address() {
    let dir = tempfile::tempdir().expect("dir");
    let store =
        Arc::new(FeatureStore::open(dir.path().join("store"), small_config()).expect("open"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let err = runtime
        .block_on(async {
            let listener = tokio::net::TcpListener::bind("0.0.0.0:0")
                .await
                .expect("bind");
            featstore::server::run_with(store, listener, ServerConfig::default(), async {}).await
        })
        .expect_err("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
    let message = err.to_string();
    assert!(
        message.contains("--token-file") && message.contains("--insecure-open"),
        "{message}"
    );
}
