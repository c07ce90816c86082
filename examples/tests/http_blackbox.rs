//! Black-box: a hub and two workers as separate processes of `examples/agent.rs` on loopback
//! ports, driven over plain HTTP the way the original Ananta's dashboard and curl scripts drive them.
//!
//! Registration and heartbeats, a task assigned by URL with the worker's token, propose and
//! execute forwarded to the worker, the task's log, the event stream, 401 on every write route
//! without or with a wrong token, a killed worker going offline and getting no work, a hub
//! stopped with SIGTERM (graceful) and restarted on the same database finding its tasks again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ananta_core::http::{Access, HUB_ROUTES, WORKER_ROUTES};
use futures::StreamExt;
use serde_json::{Value, json};

const HUB_TOKEN: &str = "hub-token-blackbox";

/// The example binary next to this test's binary (cargo builds examples for `cargo test`),
/// built on demand otherwise.
fn agent_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.parent().unwrap().parent().unwrap();
    let path = target.join("examples").join("agent");
    if !path.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "ananta-examples", "--example", "agent"])
            .status()
            .unwrap();
        assert!(status.success(), "building the agent example failed");
    }
    path
}

struct Proc {
    child: Child,
    url: String,
    name: &'static str,
}

impl Proc {
    fn start(name: &'static str, envs: &[(&str, String)], dir: &Path) -> Proc {
        let mut cmd = Command::new(agent_binary());
        cmd.current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", dir)
            .env("RUST_LOG", "info,tower_http=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{name} did not start"));
        let url = line
            .split("listening on ")
            .nth(1)
            .unwrap_or_else(|| panic!("{name}: unexpected first line {line:?}"))
            .trim()
            .to_string();
        Proc { child, url, name }
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        // SIGTERM, then wait for the graceful exit.
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "{} ignored SIGTERM", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn hub(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.send(method, path, body, Some(HUB_TOKEN)).await
    }
}

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn agent_status(hub: &Client, name: &str) -> Option<String> {
    let (status, agent) = hub.hub("GET", &format!("/agents/{name}"), None).await;
    (status == 200).then(|| agent["status"].as_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_and_two_workers_as_processes() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("hub.db").display());
    let hub_port = free_port();
    let hub_env = vec![
        ("ROLE", "hub".to_string()),
        ("PORT", hub_port.to_string()),
        ("AGENT_NAME", "hub".to_string()),
        ("AGENT_TOKEN", HUB_TOKEN.to_string()),
        ("DATABASE_URL", db.clone()),
    ];
    let mut hub_proc = Proc::start("hub", &hub_env, dir.path());
    let hub = Client {
        http: {
            ananta_core::tls::install_default_provider();
            reqwest::Client::new()
        },
        base: hub_proc.url.clone(),
    };
    // Quick heartbeats and checks for the test (admin: the hub's token).
    let (status, config) = hub
        .hub(
            "POST",
            "/config",
            Some(json!({"heartbeat_interval_secs": 1, "offline_after_secs": 3, "check_interval_secs": 1})),
        )
        .await;
    assert_eq!(status, 200, "{config}");

    let worker_env = |name: &str, token: &str| {
        vec![
            ("ROLE", "worker".to_string()),
            ("PORT", "0".to_string()),
            ("AGENT_NAME", name.to_string()),
            ("AGENT_TOKEN", token.to_string()),
            ("HUB_URL", hub_proc.url.clone()),
            ("HUB_TOKEN", HUB_TOKEN.to_string()),
            ("AGENT_DESCRIPTION", format!("{name} runs shell commands")),
        ]
    };
    let alpha = Proc::start("alpha", &worker_env("alpha", "alpha-token"), dir.path());
    let mut beta = Proc::start("beta", &worker_env("beta", "beta-token"), dir.path());
    for name in ["alpha", "beta"] {
        wait_for(
            &format!("{name} to register"),
            Duration::from_secs(20),
            || async { agent_status(&hub, name).await.as_deref() == Some("online") },
        )
        .await;
    }

    // Watch the event stream from here on.
    let events = hub
        .http
        .get(format!("{}/events", hub.base))
        .bearer_auth(HUB_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        let mut stream = events.bytes_stream();
        while let Some(Ok(chunk)) = stream.next().await {
            let _ = seen_tx.send(String::from_utf8_lossy(&chunk).into_owned());
        }
    });

    // The original curl flow: create, assign by URL with the worker's token, propose, execute, logs.
    let (status, task) = hub
        .hub("POST", "/tasks", Some(json!({"title": "Repo-Analyse"})))
        .await;
    assert_eq!(status, 201, "{task}");
    let id = task["id"].as_str().unwrap().to_string();
    let (status, assigned) = hub
        .hub(
            "POST",
            &format!("/tasks/{id}/assign"),
            Some(json!({"agent_url": alpha.url, "token": "alpha-token"})),
        )
        .await;
    assert_eq!(
        (status, assigned["assigned_agent"].as_str()),
        (200, Some("alpha")),
        "{assigned}"
    );
    let (status, proposed) = hub
        .hub(
            "POST",
            &format!("/tasks/{id}/step/propose"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200, "{proposed}");
    assert_eq!(proposed["command"], "pwd && ls -la");
    let (status, step) = hub
        .hub(
            "POST",
            &format!("/tasks/{id}/step/execute"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200, "{step}");
    assert_eq!(step["outcome"]["exit_code"], 0, "{step}");
    assert!(
        step["outcome"]["stdout"]
            .as_str()
            .unwrap()
            .contains("workspace-alpha"),
        "{step}"
    );
    let (status, step) = hub
        .hub(
            "POST",
            &format!("/tasks/{id}/step/execute"),
            Some(json!({"command": "echo hello"})),
        )
        .await;
    assert_eq!(
        (status, step["outcome"]["stdout"].as_str()),
        (200, Some("hello\n")),
        "{step}"
    );
    let (status, logs) = hub
        .send("GET", &format!("/tasks/{id}/logs"), None, Some(HUB_TOKEN))
        .await;
    assert_eq!(status, 200);
    let kinds: Vec<&str> = logs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for kind in ["assign", "propose", "proposal", "command", "output"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    // The worker refuses a step from someone without its token.
    let worker = Client {
        http: hub.http.clone(),
        base: alpha.url.clone(),
    };
    let (status, _) = worker
        .send(
            "POST",
            "/step/execute",
            Some(json!({"command": "echo x"})),
            Some(HUB_TOKEN),
        )
        .await;
    assert_eq!(status, 401);

    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while ![
        "task_created",
        "task_assigned",
        "step_proposed",
        "step_executed",
    ]
    .iter()
    .all(|e| seen.contains(&format!("event: {e}")))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, seen_rx.recv()).await {
            Ok(Some(chunk)) => seen.push_str(&chunk),
            _ => panic!("events missing from the stream: {seen}"),
        }
    }

    // Every write route: 401 without a token and with a wrong one (hub and worker).
    for (client, routes) in [(&hub, HUB_ROUTES), (&worker, WORKER_ROUTES)] {
        for route in routes
            .iter()
            .filter(|r| r.is_write() && r.access != Access::Public)
        {
            let path = route.path_with(&id);
            for token in [None, Some("wrong-token")] {
                let (status, body) = client
                    .send(route.method, &path, Some(json!({})), token)
                    .await;
                assert_eq!(
                    status, 401,
                    "{} {path} with {token:?}: {body}",
                    route.method
                );
                assert_eq!(body["error"]["code"], "unauthorized");
            }
        }
    }

    // Rotate alpha's token: alpha tells the hub first, then switches; the hub's next step
    // reaches alpha with the new token, and the old one is refused.
    let (status, rotated) = worker
        .send("POST", "/rotate-token", None, Some("alpha-token"))
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new_token = rotated["token"].as_str().unwrap().to_string();
    assert_ne!(new_token, "alpha-token");
    let (status, step) = hub
        .hub(
            "POST",
            &format!("/tasks/{id}/step/execute"),
            Some(json!({"command": "echo rotated"})),
        )
        .await;
    assert_eq!(
        (status, step["outcome"]["stdout"].as_str()),
        (200, Some("rotated\n")),
        "{step}"
    );
    let (status, _) = worker.send("GET", "/logs", None, Some("alpha-token")).await;
    assert_eq!(status, 401);
    let (status, _) = worker.send("GET", "/logs", None, Some(&new_token)).await;
    assert_eq!(status, 200);

    // Kill beta: it goes offline and gets no work.
    let (_, task2) = hub
        .hub("POST", "/tasks", Some(json!({"title": "for beta"})))
        .await;
    let id2 = task2["id"].as_str().unwrap().to_string();
    let (status, _) = hub
        .hub(
            "POST",
            &format!("/tasks/{id2}/assign"),
            Some(json!({"agent": "beta"})),
        )
        .await;
    assert_eq!(status, 200);
    beta.child.kill().unwrap();
    beta.child.wait().unwrap();
    wait_for("beta to go offline", Duration::from_secs(20), || async {
        agent_status(&hub, "beta").await.as_deref() == Some("offline")
    })
    .await;
    assert!(seen_rx_contains(&mut seen_rx, &mut seen, "agent_status_changed").await);
    let (status, err) = hub
        .hub("POST", &format!("/tasks/{id2}/step/propose"), None)
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (503, Some("agent_offline")),
        "{err}"
    );
    let (_, task3) = hub
        .hub("POST", "/tasks", Some(json!({"title": "no work for beta"})))
        .await;
    let id3 = task3["id"].as_str().unwrap();
    let (status, err) = hub
        .hub(
            "POST",
            &format!("/tasks/{id3}/assign"),
            Some(json!({"agent": "beta"})),
        )
        .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (503, Some("agent_offline")),
        "{err}"
    );
    assert_eq!(agent_status(&hub, "alpha").await.as_deref(), Some("online"));

    // SIGTERM the hub: it exits cleanly; restarted on the same database it has its tasks.
    let exit = hub_proc.terminate();
    assert!(exit.success(), "the hub exited with {exit}");
    let hub_proc = Proc::start("hub", &hub_env, dir.path());
    assert_eq!(hub_proc.url, hub.base);
    let (status, again) = hub.hub("GET", &format!("/tasks/{id}"), None).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["steps"].as_array().unwrap().len(), 3);
    assert_eq!(again["assigned_agent"], "alpha");
    // alpha's heartbeat (every 10 s after a restart: the default interval) reconnects it.
    wait_for(
        "alpha to reconnect after the hub restart",
        Duration::from_secs(30),
        || async {
            let (status, p) = hub
                .hub(
                    "POST",
                    &format!("/tasks/{id}/step/execute"),
                    Some(json!({"command": "echo back"})),
                )
                .await;
            status == 200 && p["outcome"]["stdout"] == "back\n"
        },
    )
    .await;
    drop(alpha);
    drop(hub_proc);
}

async fn seen_rx_contains(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    seen: &mut String,
    event: &str,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains(&format!("event: {event}")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(chunk)) => seen.push_str(&chunk),
            _ => return false,
        }
    }
    true
}
