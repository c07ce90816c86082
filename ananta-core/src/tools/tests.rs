//! The file tools against a real temporary folder: what they do, and every refusal typed.

use super::*;

struct Dir {
    _tmp: tempfile::TempDir,
    ws: PathBuf,
}

fn dir() -> Dir {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(ws.join("src")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(ws.join("src/lib.rs"), "fn a() {}\nfn b() {}\nfn a2() {}\n")
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(tmp.path().join("secret.txt"), "top secret").unwrap_or_else(|e| panic!("{e}"));
    Dir { _tmp: tmp, ws }
}

async fn call(ctx: &ToolContext, tool: &str, args: &str) -> Result<String, ToolError> {
    let tool = Toolbox::files()
        .get(tool)
        .unwrap_or_else(|| panic!("no tool {tool}"));
    tool.call(ctx, args).await
}

#[tokio::test]
async fn read_write_edit_list_and_search() {
    let d = dir();
    let ctx = ToolContext::new(&d.ws);
    let read = call(
        &ctx,
        "read_file",
        r#"{"path": "src/lib.rs", "start_line": 2, "end_line": 2}"#,
    )
    .await;
    assert_eq!(read.ok().as_deref(), Some("2\tfn b() {}\n"));
    let wrote = call(
        &ctx,
        "write_file",
        r#"{"path": "notes/a.txt", "content": "hi\n"}"#,
    )
    .await;
    assert!(wrote.is_ok_and(|t| t.contains("notes/a.txt")));
    assert_eq!(
        std::fs::read_to_string(d.ws.join("notes/a.txt"))
            .ok()
            .as_deref(),
        Some("hi\n")
    );
    let edited = call(
        &ctx,
        "edit_file",
        r#"{"path": "src/lib.rs", "old": "fn b() {}", "new": "fn c() {}"}"#,
    )
    .await;
    assert!(edited.is_ok(), "{edited:?}");
    let text = std::fs::read_to_string(d.ws.join("src/lib.rs")).unwrap_or_default();
    assert!(text.contains("fn c() {}") && !text.contains("fn b()"));

    std::fs::write(d.ws.join(".gitignore"), "target/\n").unwrap_or_else(|e| panic!("{e}"));
    std::fs::create_dir_all(d.ws.join("target")).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(d.ws.join("target/out.rs"), "fn a() {}\n").unwrap_or_else(|e| panic!("{e}"));
    let listed = call(&ctx, "list_files", "{}").await.unwrap_or_default();
    assert!(
        listed.contains("src/lib.rs") && listed.contains("notes/a.txt"),
        "{listed}"
    );
    assert!(
        !listed.contains("target"),
        "ignored files are not listed: {listed}"
    );
    let found = call(&ctx, "search", r#"{"pattern": "fn a\\d?\\("}"#)
        .await
        .unwrap_or_default();
    assert_eq!(found, "src/lib.rs:1: fn a() {}\nsrc/lib.rs:3: fn a2() {}\n");
    let none = call(&ctx, "search", r#"{"pattern": "zzz"}"#).await;
    assert_eq!(none.ok().as_deref(), Some("(no matches)\n"));
}

#[tokio::test]
async fn escapes_are_refused_with_a_typed_error() {
    let d = dir();
    let ctx = ToolContext::new(&d.ws);
    std::os::unix::fs::symlink(d.ws.parent().unwrap_or(&d.ws), d.ws.join("up"))
        .unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink("/etc/hostname", d.ws.join("host"))
        .unwrap_or_else(|e| panic!("{e}"));
    let cases = [
        ("read_file", r#"{"path": "../secret.txt"}"#),
        ("read_file", r#"{"path": "src/../../secret.txt"}"#),
        ("read_file", r#"{"path": "/etc/passwd"}"#),
        ("read_file", r#"{"path": "up/secret.txt"}"#),
        ("read_file", r#"{"path": "host"}"#),
        ("write_file", r#"{"path": "../evil.txt", "content": "x"}"#),
        ("write_file", r#"{"path": "up/evil.txt", "content": "x"}"#),
        ("write_file", r#"{"path": "/tmp/evil.txt", "content": "x"}"#),
        (
            "edit_file",
            r#"{"path": "up/secret.txt", "old": "top", "new": "no"}"#,
        ),
        ("list_files", r#"{"path": ".."}"#),
        ("search", r#"{"pattern": "secret", "path": "up"}"#),
    ];
    for (tool, args) in cases {
        let result = call(&ctx, tool, args).await;
        assert!(
            matches!(result, Err(ToolError::OutsideWorkspace { .. })),
            "{tool} {args}: {result:?}"
        );
    }
    assert!(!d.ws.parent().unwrap_or(&d.ws).join("evil.txt").exists());
    assert_eq!(
        std::fs::read_to_string(d.ws.parent().unwrap_or(&d.ws).join("secret.txt"))
            .ok()
            .as_deref(),
        Some("top secret")
    );
}

#[tokio::test]
async fn bad_arguments_read_only_and_edit_rules_are_typed() {
    let d = dir();
    let ctx = ToolContext::new(&d.ws);
    for (tool, args) in [
        ("read_file", "not json"),
        ("read_file", r#"{"file": "src/lib.rs"}"#),
        ("read_file", r#"{"path": 7}"#),
        ("write_file", r#"{"path": "a.txt"}"#),
        ("search", r#"{"pattern": "("}"#),
        (
            "edit_file",
            r#"{"path": "src/lib.rs", "old": "", "new": "x"}"#,
        ),
    ] {
        let result = call(&ctx, tool, args).await;
        assert!(
            matches!(result, Err(ToolError::InvalidArguments(_))),
            "{tool} {args}: {result:?}"
        );
    }
    let missing = call(&ctx, "read_file", r#"{"path": "nope.txt"}"#).await;
    assert!(
        matches!(missing, Err(ToolError::NotFound { .. })),
        "{missing:?}"
    );
    let ambiguous = call(
        &ctx,
        "edit_file",
        r#"{"path": "src/lib.rs", "old": "fn a", "new": "fn z"}"#,
    )
    .await;
    assert!(
        matches!(ambiguous, Err(ToolError::AmbiguousMatch { count: 2, .. })),
        "{ambiguous:?}"
    );
    let absent = call(
        &ctx,
        "edit_file",
        r#"{"path": "src/lib.rs", "old": "fn q", "new": "x"}"#,
    )
    .await;
    assert!(
        matches!(absent, Err(ToolError::NoMatch { .. })),
        "{absent:?}"
    );

    let read_only = ToolContext::new(&d.ws).access(ToolAccess::ReadOnly);
    for (tool, args) in [
        ("write_file", r#"{"path": "a.txt", "content": "x"}"#),
        (
            "edit_file",
            r#"{"path": "src/lib.rs", "old": "fn b", "new": "fn x"}"#,
        ),
    ] {
        let result = call(&read_only, tool, args).await;
        assert!(
            matches!(result, Err(ToolError::ReadOnly { .. })),
            "{tool}: {result:?}"
        );
    }
    assert!(!d.ws.join("a.txt").exists());
    assert!(
        call(&read_only, "read_file", r#"{"path": "src/lib.rs"}"#)
            .await
            .is_ok()
    );

    let big = "x".repeat(files::MAX_WRITE_BYTES + 1);
    let args = serde_json::json!({"path": "big.txt", "content": big}).to_string();
    assert!(matches!(
        call(&ctx, "write_file", &args).await,
        Err(ToolError::TooLarge { .. })
    ));
}

#[test]
fn the_toolbox_lists_the_built_ins_first_and_replaces_by_name() {
    let names: Vec<String> = Toolbox::files()
        .specs()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(
        names,
        [
            "run_command",
            "finish",
            "read_file",
            "write_file",
            "edit_file",
            "list_files",
            "search"
        ]
    );
    let again = Toolbox::files().with(Arc::new(ReadFile));
    assert_eq!(again.specs().len(), 7);
    assert!(Toolbox::empty().is_empty());
}
