//! Every hostile command of `tests/corpus/hostile.toml`, run as root through a strict sandbox
//! (no policy): nothing outside the workspace is created, changed or read, no connection
//! leaves, no process outlives the step, and each step ends within its timeout.
//!
//! Per case: a fresh workspace (a git repository) beside a fake `HOME` (with `.ssh/id_ed25519`,
//! `.aws/credentials`, `.bashrc`) and an `$OUTSIDE` directory (with `secret.txt`); afterwards
//! `git status` and `git commit` run outside the sandbox in the workspace (a planted hook or
//! setting would create a file outside), the contents and metadata there are unchanged, nothing new exists, inotify saw no open or
//! access there (reads; atimes do not move on the sandbox's read-only mounts), the output
//! holds no sentinel, a listener on `$PORT` accepted nothing, no process carrying the case's
//! environment marker or sitting in its cgroup is alive, and the step took at most timeout +
//! grace + slack.
//!
//! Safety: a strict sandbox refuses to run when the kernel lacks a feature (the test then
//! returns early), and each case starts with a canary write outside the workspace; if that
//! write succeeds the shell exits 97 before the hostile command, and the test fails.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(clippy::print_stderr)] // per-case timings and skip notices

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ananta_core::exec::{ExecRequest, Executor};
use ananta_exec::{Limits, SandboxConfig, ShellExecutor};

mod support;

const UNCONFINED: i32 = 97;
const TIMEOUT: Duration = Duration::from_secs(3);
const GRACE: Duration = Duration::from_millis(500);
/// Allowed on top of timeout + grace for setup and cleanup of a step.
const SLACK: Duration = Duration::from_secs(3);
const PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
const HOST_SECRET: &str = "SENTINEL-HOST-ENV-7f3a";
const SENTINELS: &[(&str, &str)] = &[
    ("home/.ssh/id_ed25519", "SENTINEL-SSH-KEY-91b2"),
    ("home/.aws/credentials", "SENTINEL-AWS-KEY-c4d8"),
    ("home/.bashrc", "SENTINEL-BASHRC-55e1"),
    ("outside/secret.txt", "SENTINEL-OUTSIDE-SECRET-0a9f"),
];

/// State of one file or directory: everything a change or a read would alter.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    len: u64,
    mtime: (i64, i64),
    content: Option<Vec<u8>>,
}

/// Metadata of every entry beneath `root` (without following symlinks).
fn metadata_tree(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let kind = if meta.is_dir() {
            "dir"
        } else if meta.file_type().is_symlink() {
            "symlink"
        } else {
            "file"
        };
        out.insert(
            path.clone(),
            Entry {
                kind,
                mode: meta.mode(),
                len: meta.len(),
                mtime: (meta.mtime(), meta.mtime_nsec()),
                content: None,
            },
        );
        if meta.is_dir()
            && let Ok(entries) = std::fs::read_dir(&path)
        {
            stack.extend(entries.flatten().map(|e| e.path()));
        }
    }
    out
}

/// Contents of the regular files beneath `root`.
fn contents(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    metadata_tree(root)
        .into_iter()
        .filter(|(_, e)| e.kind == "file")
        .filter_map(|(p, _)| std::fs::read(&p).ok().map(|c| (p, c)))
        .collect()
}

/// An inotify instance watching directories: reports any open, read, write or metadata
/// change of them or of the files in them (a read that Landlock refuses opens nothing).
struct Watch {
    fd: std::os::fd::OwnedFd,
}

impl Watch {
    fn new(dirs: impl IntoIterator<Item = PathBuf>) -> Self {
        use std::os::fd::FromRawFd;
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: inotify_init1 has no preconditions; the descriptor is owned below.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(
            raw >= 0,
            "inotify_init1: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: just returned by the kernel, owned by nobody else.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        for dir in dirs {
            let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
            // SAFETY: valid descriptor and NUL-terminated path.
            let wd = unsafe { libc::inotify_add_watch(raw, c.as_ptr(), libc::IN_ALL_EVENTS) };
            assert!(
                wd >= 0,
                "watch {}: {}",
                dir.display(),
                std::io::Error::last_os_error()
            );
        }
        Self { fd }
    }

    /// Pending events (mask and name), emptying the queue.
    fn drain(&self) -> Vec<(u32, String)> {
        use std::os::fd::AsRawFd;
        let mut events = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: reads into our buffer of the given length.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return events;
            }
            let mut off = 0usize;
            while off + 16 <= n as usize {
                let field =
                    |at: usize| u32::from_ne_bytes(buf[off + at..off + at + 4].try_into().unwrap());
                let (mask, len) = (field(4), field(12) as usize);
                let name = String::from_utf8_lossy(&buf[off + 16..off + 16 + len])
                    .trim_end_matches('\0')
                    .to_string();
                events.push((mask, name));
                off += 16 + len;
            }
        }
    }
}

/// The directory tree of one case.
struct World {
    _root: tempfile::TempDir,
    base: PathBuf,
    workspace: PathBuf,
    home: PathBuf,
    outside: PathBuf,
    sandbox_tmp: PathBuf,
}

impl World {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let base = root.path().canonicalize().unwrap();
        for dir in ["ws", "home/.ssh", "home/.aws", "outside", "sandbox-tmp"] {
            std::fs::create_dir_all(base.join(dir)).unwrap();
        }
        for (path, content) in SENTINELS {
            std::fs::write(base.join(path), format!("{content}\n")).unwrap();
        }
        let workspace = base.join("ws");
        std::fs::write(workspace.join("README.md"), "a workspace\n").unwrap();
        for args in [
            &["init", "-q"][..],
            &["add", "-A"],
            &["commit", "-qm", "init"],
        ] {
            assert!(
                support::host_git(&workspace, args).status.success(),
                "git {args:?}"
            );
        }
        Self {
            workspace: base.join("ws"),
            home: base.join("home"),
            outside: base.join("outside"),
            sandbox_tmp: base.join("sandbox-tmp"),
            base,
            _root: root,
        }
    }

    /// Metadata of everything but the workspace's contents. The workspace, the base and the
    /// sandbox's temp parent (where the executor itself creates and removes the private temp
    /// dir) count by existence, kind and mode only.
    fn metadata(&self) -> BTreeMap<PathBuf, Entry> {
        metadata_tree(&self.base)
            .into_iter()
            .filter(|(p, _)| !p.starts_with(&self.workspace) || *p == self.workspace)
            .map(|(p, e)| {
                if p == self.workspace || p == self.base || p == self.sandbox_tmp {
                    let e = Entry {
                        mtime: (0, 0),
                        len: 0,
                        ..e
                    };
                    (p, e)
                } else {
                    (p, e)
                }
            })
            .collect()
    }

    /// Runs git in the workspace outside the sandbox.
    fn host_git(&self, args: &[&str]) {
        let _ = support::host_git(&self.workspace, args);
    }

    /// Contents of the files outside the workspace.
    fn contents(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        contents(&self.base)
            .into_iter()
            .filter(|(p, _)| !p.starts_with(&self.workspace))
            .collect()
    }

    /// Every directory beneath home and outside.
    fn watched_dirs(&self) -> Vec<PathBuf> {
        [&self.home, &self.outside]
            .into_iter()
            .flat_map(|root| metadata_tree(root))
            .filter(|(_, e)| e.kind == "dir")
            .map(|(p, _)| p)
            .collect()
    }
}

const SHM_SENTINEL: &str = "SENTINEL-SHM-6d2b";
const ETC_SENTINEL: &str = "SENTINEL-ETC-b71c";
/// Keys of the IPC objects a corpus case creates inside (`0x5a5a0001`…): none may survive.
const INSIDE_IPC_KEYS: [i32; 3] = [0x5a5a_0001, 0x5a5a_0002, 0x5a5a_0003];

/// What the host offers a hostile command, outside the case's tree: Unix sockets with
/// listeners (outside the workspace, in `/run`, abstract), a SysV shared-memory segment and
/// files in `/etc`, each holding or counting a sentinel.
struct HostBait {
    _dir: tempfile::TempDir,
    _run_dir: Option<tempfile::TempDir>,
    sock: PathBuf,
    run_sock: PathBuf,
    abstract_name: String,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    shm_key: i32,
    shm_id: i32,
    etc_files: Vec<PathBuf>,
}

impl HostBait {
    fn plant() -> Self {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::net::{SocketAddr, UnixListener};
        use std::sync::atomic::{AtomicUsize, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let run_dir = tempfile::Builder::new()
            .prefix("ananta-corpus-")
            .tempdir_in("/run")
            .ok();
        let sock = dir.path().join("service.sock");
        let run_sock = run_dir
            .as_ref()
            .map_or_else(|| dir.path().join("run.sock"), |d| d.path().join("db.sock"));
        let abstract_name = format!("ananta-corpus-{}", std::process::id());
        let connections = std::sync::Arc::new(AtomicUsize::new(0));
        let listeners = [
            UnixListener::bind(&sock).unwrap(),
            UnixListener::bind(&run_sock).unwrap(),
            UnixListener::bind_addr(&SocketAddr::from_abstract_name(&abstract_name).unwrap())
                .unwrap(),
        ];
        for listener in listeners {
            let seen = std::sync::Arc::clone(&connections);
            std::thread::spawn(move || {
                for _ in listener.incoming().flatten() {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
        let shm_key = 0x414e_0000 + (std::process::id() as i32 & 0xffff);
        // SAFETY: System V calls on a segment of this test; written while attached.
        let shm_id = unsafe { libc::shmget(shm_key, 4096, libc::IPC_CREAT | 0o600) };
        assert!(shm_id >= 0, "shmget: {}", std::io::Error::last_os_error());
        unsafe {
            let at = libc::shmat(shm_id, std::ptr::null(), 0);
            assert_ne!(at as isize, -1);
            std::ptr::copy_nonoverlapping(SHM_SENTINEL.as_ptr(), at.cast(), SHM_SENTINEL.len());
            libc::shmdt(at);
        }
        let etc_files = vec![
            PathBuf::from("/etc/ananta-corpus-secret"),
            PathBuf::from("/etc/ananta-corpus.d/token"),
        ];
        std::fs::create_dir_all("/etc/ananta-corpus.d").unwrap();
        for file in &etc_files {
            std::fs::write(file, format!("{ETC_SENTINEL}\n")).unwrap();
        }
        Self {
            _dir: dir,
            _run_dir: run_dir,
            sock,
            run_sock,
            abstract_name,
            connections,
            shm_key,
            shm_id,
            etc_files,
        }
    }

    /// What a case did to the host's bait.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let connections = self
            .connections
            .swap(0, std::sync::atomic::Ordering::SeqCst);
        if connections != 0 {
            problems.push(format!(
                "{connections} Unix socket connection(s) reached the host"
            ));
        }
        // SAFETY: looks the segments up by key; nothing is attached.
        if unsafe { libc::shmget(self.shm_key, 0, 0) } != self.shm_id {
            problems.push("the host's shared-memory segment is gone".into());
        }
        for key in INSIDE_IPC_KEYS {
            // SAFETY: lookups by key; any object found is removed so the next case starts clean.
            unsafe {
                let shm = libc::shmget(key, 0, 0);
                let msg = libc::msgget(key, 0);
                let sem = libc::semget(key, 0, 0);
                if shm >= 0 || msg >= 0 || sem >= 0 {
                    problems.push(format!(
                        "an IPC object of the run (key {key:#x}) outlived it"
                    ));
                    libc::shmctl(shm, libc::IPC_RMID, std::ptr::null_mut());
                    libc::msgctl(msg, libc::IPC_RMID, std::ptr::null_mut());
                    libc::semctl(sem, 0, libc::IPC_RMID);
                }
            }
        }
        for file in &self.etc_files {
            if std::fs::read_to_string(file).ok() != Some(format!("{ETC_SENTINEL}\n")) {
                problems.push(format!("{} changed", file.display()));
            }
        }
        problems
    }

    fn remove(&self) {
        // SAFETY: removes this test's own segment.
        unsafe { libc::shmctl(self.shm_id, libc::IPC_RMID, std::ptr::null_mut()) };
        let _ = std::fs::remove_dir_all("/etc/ananta-corpus.d");
        let _ = std::fs::remove_file("/etc/ananta-corpus-secret");
    }
}

/// Live processes carrying `marker` in their environment, or in a sandbox cgroup of ours.
fn leftovers(marker: &str) -> Vec<(i32, String)> {
    let cgroup = format!("ananta-sandbox/run-{}-", std::process::id());
    support::live_processes()
        .into_iter()
        .filter(|p| p.environ().contains(marker) || p.cgroups().contains(&cgroup))
        .map(|p| (p.pid, p.cmdline()))
        .collect()
}

fn cases() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/hostile.toml");
    let table: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
    table["case"]
        .as_array()
        .unwrap()
        .iter()
        .map(|case| {
            (
                case["group"].as_str().unwrap().to_string(),
                case["command"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Paths outside the case's tree that corpus commands name.
const NAMED_OUTSIDE: &[&str] = &["/tmp/.hidden-shell", "/tmp/pwned.txt", "/pwned.txt"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_case_is_contained() {
    if !support::strict_sandbox_available("hostile corpus") {
        return;
    }
    // SAFETY: set before any thread of ours reads the environment; std serialises its own
    // environment accesses, and no C code reads it concurrently here.
    unsafe { std::env::set_var("ANANTA_CORPUS_HOST_SECRET", HOST_SECRET) };

    let cases = cases();
    assert_eq!(cases.len(), 121, "the corpus changed size");
    let listening = support::Listener::start();
    let port = listening.port;
    let host = HostBait::plant();
    let named_before: Vec<bool> = NAMED_OUTSIDE
        .iter()
        .map(|p| Path::new(p).exists())
        .collect();
    let started = Instant::now();
    let mut failures = Vec::new();

    for (index, (group, command)) in cases.iter().enumerate() {
        let world = World::new();
        let mut limits = Limits::default();
        limits.max_processes = 64;
        limits.max_file_size = 16 << 20;
        limits.max_address_space = 1 << 30;
        limits.max_cpu_seconds = 5;
        let config = SandboxConfig::new(&world.workspace)
            .limits(limits)
            .temp_parent(&world.sandbox_tmp);
        let exec = ShellExecutor::new(&world.workspace)
            .timeout(TIMEOUT)
            .kill_grace(GRACE)
            .output_cap(64 * 1024)
            .allowed_env("ANANTA_CORPUS_HOST_SECRET")
            .env_allowlist(["LANG"])
            .sandbox(config);

        let before_contents = world.contents();
        let before_meta = world.metadata();
        let watch = Watch::new(world.watched_dirs());
        let _ = watch.drain();

        let marker = format!("ANANTA_CORPUS_MARK={}-{index}", std::process::id());
        let mut env = BTreeMap::new();
        env.insert("HOME".to_string(), world.home.display().to_string());
        env.insert("OUTSIDE".to_string(), world.outside.display().to_string());
        env.insert("PORT".to_string(), port.to_string());
        env.insert("SOCK".to_string(), host.sock.display().to_string());
        env.insert("RUNSOCK".to_string(), host.run_sock.display().to_string());
        env.insert("ABSTRACT".to_string(), host.abstract_name.clone());
        env.insert("SHMKEY".to_string(), host.shm_key.to_string());
        env.insert("PATH".to_string(), PATH.to_string());
        let (key, value) = marker.split_once('=').unwrap();
        env.insert(key.to_string(), value.to_string());
        let mut request = ExecRequest::new(format!(
            "touch \"$OUTSIDE/canary\" 2>/dev/null && exit {UNCONFINED}\n{command}"
        ));
        request.env = env;

        let t0 = Instant::now();
        let result = exec.run(request, None).await;
        let took = t0.elapsed();
        let mut problems = Vec::new();
        let outcome = match result {
            Ok(outcome) => Some(outcome),
            Err(err) => {
                problems.push(format!("executor error: {err}"));
                None
            }
        };
        if let Some(out) = &outcome {
            if out.exit_code == Some(UNCONFINED) {
                problems.push("SANDBOX NOT ACTIVE: canary written outside".into());
            }
            let host_secrets = [
                ("env", HOST_SECRET),
                ("shm", SHM_SENTINEL),
                ("etc", ETC_SENTINEL),
            ];
            for (_, secret) in SENTINELS.iter().chain(&host_secrets) {
                if out.stdout.contains(secret) || out.stderr.contains(secret) {
                    problems.push(format!("output reveals {secret}"));
                }
            }
        }
        if took > TIMEOUT + GRACE + SLACK {
            problems.push(format!("took {took:?}"));
        }

        // Git outside the sandbox, as the user would run it next: a planted hook or setting
        // would create `$OUTSIDE/pwned`, which the checks below see.
        world.host_git(&["status", "--porcelain"]);
        std::fs::write(
            world.workspace.join("host-change.txt"),
            format!("{index}\n"),
        )
        .unwrap();
        world.host_git(&["add", "host-change.txt"]);
        world.host_git(&["commit", "-qm", "the user's next commit"]);
        problems.extend(host.problems());

        // Nothing outside the workspace created, changed or read.
        // Events first: the checks below read the files themselves.
        let touched = watch.drain();
        if !touched.is_empty() {
            problems.push(format!(
                "home or outside touched (inotify mask, name): {touched:x?}"
            ));
        }
        let after_meta = world.metadata();
        let after_contents = world.contents();
        if after_contents != before_contents {
            problems.push("contents outside the workspace changed".into());
        }
        let keys: BTreeSet<&PathBuf> = before_meta.keys().chain(after_meta.keys()).collect();
        for path in keys {
            match (before_meta.get(path), after_meta.get(path)) {
                (Some(b), Some(a)) if b == a => {}
                (Some(b), Some(a)) => problems.push(format!(
                    "{} changed or read: {b:?} -> {a:?}",
                    path.display()
                )),
                (Some(_), None) => problems.push(format!("{} removed", path.display())),
                (None, Some(_)) => problems.push(format!("{} created", path.display())),
                (None, None) => {}
            }
        }
        for (path, existed) in NAMED_OUTSIDE.iter().zip(&named_before) {
            if !existed && Path::new(path).exists() {
                problems.push(format!("{path} created"));
                let _ = std::fs::remove_file(path);
            }
        }
        if listening.accepted() != 0 {
            problems.push("the listener accepted a connection".into());
        }
        // No process outlives the step (the executor killed the group and the cgroup before
        // returning; allow the kernel a moment to tear exiting processes down).
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let left = leftovers(&marker);
            if left.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                problems.push(format!("processes outlived the step: {left:?}"));
                for (pid, _) in left {
                    // SAFETY: kill only sends a signal (to a process of this case).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        let status = outcome.as_ref().map_or("error".to_string(), |o| {
            format!(
                "exit {:?} signal {:?} timed_out {}",
                o.exit_code, o.signal, o.timed_out
            )
        });
        eprintln!("[{index:2}] {group:13} {took:>8.2?} {status:40} {command}");
        if !problems.is_empty() {
            failures.push(format!(
                "case {index} ({group}) `{command}`:\n  {}",
                problems.join("\n  ")
            ));
        }
    }
    host.remove();
    let total = started.elapsed();
    eprintln!("corpus: {} cases in {total:.1?}", cases.len());
    assert!(
        failures.is_empty(),
        "{} cases not contained:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        total < Duration::from_secs(150),
        "the corpus took {total:?}"
    );
}
