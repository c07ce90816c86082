//! HTTP fuzzing of every route of the hub and the worker: thousands of generated requests —
//! valid ones, wrong methods, bad ids, odd unicode, malformed and truncated JSON, wrong types,
//! unknown fields, huge and deeply nested bodies, wrong content types, missing and wrong
//! credentials — and not one may be answered with a 5xx (or panic the server). Every error
//! answer must be the one JSON error shape.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod http_support;

use std::collections::BTreeMap;

use ananta_core::http::{ErrorBody, HUB_ROUTES, RouteSpec, WORKER_ROUTES, WorkerApi};
use ananta_core::http::{HttpOptions, Role};
use axum::body::Body;
use axum::http::Request;
use http_support::{HUB_TOKEN, RecordingExecutor, call, json, test_hub, worker};
use serde_json::{Value, json};

const REQUESTS_PER_ROLE: usize = 3_000;

fn pick<'a, T>(rng: &mut fastrand::Rng, items: &'a [T]) -> &'a T {
    &items[rng.usize(..items.len())]
}

fn odd_strings() -> Vec<String> {
    vec![
        String::new(),
        " ".into(),
        "ü💥\u{202e}evil".into(),
        "\u{0}nul".into(),
        "a".repeat(70_000),
        "T-".into(),
        "T-01ZZZZZZZZZZZZZZZZZZZZZZZZ".into(),
        "../../etc/passwd".into(),
        "'; DROP TABLE tasks; --".into(),
        "\u{fffd}\u{fffe}".into(),
        "{{title}}".into(),
        "rm -rf /".into(),
    ]
}

fn random_value(rng: &mut fastrand::Rng) -> Value {
    match rng.u8(..12) {
        0 => Value::Null,
        1 => json!(rng.bool()),
        2 => json!(rng.i64(..)),
        3 => json!(-1),
        4 => json!(1e300),
        5 => json!(u64::MAX),
        6 => json!(pick(rng, &odd_strings())),
        7 => json!([1, "two", null]),
        8 => json!({"nested": {"deeper": [1, 2, 3]}}),
        9 => json!("todo"),
        10 => json!("done"),
        _ => json!(""),
    }
}

/// A plausible body for a route, before mutation.
fn sample_body(route: &RouteSpec, ids: &Ids) -> Value {
    match (route.method, route.path) {
        ("POST", "/tasks") => json!({"title": "Fuzzed task", "description": "d", "tags": ["x"]}),
        ("PATCH", "/tasks/{id}") => json!({"status": "todo", "title": "renamed"}),
        ("POST", "/templates") => {
            json!({"name": "t", "description": "d", "prompt_template": "Do {{title}}"})
        }
        ("PATCH", "/templates/{id}") => json!({"prompt_template": "Now {{description}}"}),
        ("POST", "/tasks/{id}/assign") => json!({"agent": "w1"}),
        ("POST", "/tasks/{id}/step/execute") | ("POST", "/tasks/{id}/approve") => {
            json!({"command": "echo fuzz"})
        }
        ("POST", "/tasks/{id}/reject") => json!({"reason": "no"}),
        ("POST", "/register") => json!({"name": "live", "agent_url": ids.live_url}),
        ("POST", "/config") => json!({"heartbeat_interval_secs": 5}),
        ("POST", "/login") => json!({"username": "alice", "password": "alice-password"}),
        ("POST", "/step/propose") => json!({"task_id": ids.task, "prompt": "list files"}),
        ("POST", "/step/execute") => json!({"task_id": ids.task, "command": "echo hi"}),
        _ => json!({}),
    }
}

struct Ids {
    task: String,
    template: String,
    live_url: String,
}

fn mutate(rng: &mut fastrand::Rng, body: Value) -> Vec<u8> {
    let mut body = body;
    match rng.u8(..16) {
        0..=5 => {}
        6 => {
            if let Value::Object(map) = &mut body
                && let Some(key) = map.keys().next().cloned()
            {
                map.remove(&key);
            }
        }
        7 | 8 => {
            if let Value::Object(map) = &mut body {
                let keys: Vec<String> = map.keys().cloned().collect();
                if !keys.is_empty() {
                    let key = pick(rng, &keys).clone();
                    map.insert(key, random_value(rng));
                }
            }
        }
        9 => {
            if let Value::Object(map) = &mut body {
                map.insert("unknown_field".into(), json!("surprise"));
            }
        }
        10 => {
            let text = body.to_string();
            let cut = rng.usize(..text.len().max(1));
            return text.as_bytes()[..cut].to_vec();
        }
        11 => return (0..rng.usize(1..64)).map(|_| rng.u8(..)).collect(),
        12 => return "[".repeat(20_000).into_bytes(),
        13 => return format!("{{\"title\": \"{}\"}}", "x".repeat(2 * 1024 * 1024)).into_bytes(),
        14 => return Vec::new(),
        _ => return vec![b'{', 0xff, 0xfe, b'}'],
    }
    body.to_string().into_bytes()
}

fn path_values(ids: &Ids) -> Vec<String> {
    vec![
        ids.task.clone(),
        ids.task.clone(),
        ids.template.clone(),
        "w1".into(),
        "live".into(),
        ananta_core::TaskId::new().to_string(),
        ananta_core::TemplateId::new().to_string(),
        "%00".into(),
        "%FF%FE".into(),
        "%C3%BC%F0%9F%92%A5".into(),
        "x".repeat(3000),
        "T-".into(),
        "..".into(),
        "not-an-id".into(),
    ]
}

fn queries() -> Vec<&'static str> {
    vec![
        "",
        "",
        "limit=5",
        "limit=-1",
        "limit=abc",
        "limit=99999999999999999999999",
        "status=todo,in_progress",
        "status=nope",
        "task_id=xyz",
        "agent=w1",
        "agent=%00",
        "follow=maybe",
        "before_seq=3",
        "expected_version=1",
        "expected_version=-4",
        "token=wrong",
        "tag=%F0%9F%92%A5",
    ]
}

async fn fuzz(
    router: &axum::Router,
    routes: &[RouteSpec],
    ids: &Ids,
    token: &mut String,
    jwts: &[String],
    seed: u64,
) -> BTreeMap<u16, usize> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut statuses = BTreeMap::new();
    let mut sent = 0;
    let paths = path_values(ids);
    let queries = queries();
    while sent < REQUESTS_PER_ROLE {
        let route = pick(&mut rng, routes);
        let method = if rng.u8(..100) < 85 {
            route.method
        } else {
            *pick(&mut rng, &["GET", "POST", "PATCH", "DELETE", "PUT"])
        };
        let mut uri = route.path_with(pick(&mut rng, paths.as_slice()).as_str());
        let query = *pick(&mut rng, &queries);
        // An event stream never ends by itself; those routes are asked plainly only.
        let streaming = route.stream || (route.path.ends_with("/logs") && query.contains("follow"));
        if !query.is_empty() && !streaming {
            uri = format!("{uri}?{query}");
        }
        let mut builder = Request::builder().method(method).uri(&uri);
        match rng.u8(..10) {
            0 => {}
            1 => builder = builder.header("authorization", "Bearer wrong-token"),
            2 => {
                builder =
                    builder.header("authorization", format!("Bearer {}", pick(&mut rng, jwts)))
            }
            3 => builder = builder.header("authorization", "Basic YWxpY2U6eA=="),
            _ => builder = builder.header("authorization", format!("Bearer {token}")),
        }
        let body = if method == "GET" || (method == "DELETE" && rng.bool()) {
            Vec::new()
        } else {
            mutate(&mut rng, sample_body(route, ids))
        };
        match rng.u8(..10) {
            0 => {}
            1 => builder = builder.header("content-type", "text/plain"),
            2 => builder = builder.header("content-type", "application/json; charset=utf-8"),
            3 => builder = builder.header("content-type", "\u{7f}garbage"),
            _ => builder = builder.header("content-type", "application/json"),
        }
        let Ok(request) = builder.body(Body::from(body)) else {
            continue; // the generated URI is not one a client could send
        };
        sent += 1;
        let response = call(router, request).await;
        let status = response.status().as_u16();
        *statuses.entry(status).or_insert(0) += 1;
        let is_stream = response.headers().get("content-type").is_some_and(|v| {
            v.to_str()
                .unwrap_or_default()
                .starts_with("text/event-stream")
        });
        if is_stream {
            continue;
        }
        let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024 * 1024)
            .await
            .unwrap();
        assert!(
            status < 500,
            "{method} {uri} got {status}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(500)])
        );
        if status >= 400 {
            let parsed: Result<ErrorBody, _> = serde_json::from_slice(&bytes);
            assert!(
                parsed.is_ok(),
                "{method} {uri} got {status} without the error shape: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            );
        }
        if route.path == "/rotate-token" && method == "POST" && status == 200 {
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            *token = v["token"].as_str().unwrap().to_string();
        }
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_generated_requests_get_no_5xx() {
    let t = test_hub().await;
    // Something to point ids at.
    let (_, task) = json(
        &t.router,
        "POST",
        "/tasks",
        Some(json!({"title": "first task"})),
    )
    .await;
    let (_, template) = json(
        &t.router,
        "POST",
        "/templates",
        Some(json!({"name": "first", "prompt_template": "Do {{title}}"})),
    )
    .await;
    let task_id = task["id"].as_str().unwrap().to_string();
    let (status, _) = json(
        &t.router,
        "POST",
        &format!("/tasks/{task_id}/assign"),
        Some(json!({"agent": "w1"})),
    )
    .await;
    assert_eq!(status, 200);
    let ids = Ids {
        task: task_id,
        template: template["id"].as_str().unwrap().to_string(),
        live_url: t.live_url.clone(),
    };
    let jwts = vec![
        t.auth.issue_jwt("alice", Role::User).unwrap(),
        t.auth.issue_jwt("rita", Role::Reader).unwrap(),
        t.auth.issue_jwt("root", Role::Admin).unwrap(),
    ];

    let mut token = HUB_TOKEN.to_string();
    let hub_statuses = fuzz(&t.router, HUB_ROUTES, &ids, &mut token, &jwts, 7).await;

    let worker_executed = RecordingExecutor::default();
    let worker_auth = ananta_core::http::Auth::builder()
        .token(Some("worker-token".into()))
        .build()
        .unwrap();
    let worker_router = WorkerApi::new(worker("fuzzed", worker_executed.clone()))
        .auth(worker_auth)
        .options(HttpOptions::named("fuzzed"))
        .router();
    let mut worker_token = "worker-token".to_string();
    let worker_statuses = fuzz(
        &worker_router,
        WORKER_ROUTES,
        &ids,
        &mut worker_token,
        &jwts,
        11,
    )
    .await;

    println!("hub statuses: {hub_statuses:?}");
    println!("worker statuses: {worker_statuses:?}");
    let total: usize = hub_statuses.values().chain(worker_statuses.values()).sum();
    assert!(total >= 5_000, "only {total} requests were sent");
    // The generator reaches success and the main refusals on both roles.
    let reach = |statuses: &BTreeMap<u16, usize>, expected: &[u16]| {
        for code in expected {
            assert!(
                statuses.contains_key(code),
                "no {code} among {statuses:?}: the generator lost its reach"
            );
        }
    };
    reach(
        &hub_statuses,
        &[
            200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 415, 422, 429,
        ],
    );
    reach(&worker_statuses, &[200, 400, 401, 405, 413, 415, 422]);
}
