//! Cases: logs (order, filters, paging).

use super::helpers::*;
use super::*;

/// `append_log` assigns strictly increasing `seq`s and keeps every field; `logs` returns
/// ascending order, filters by task, and `limit` gives the latest entries, still ascending.
pub async fn log_order_and_filters(store: DynStore) {
    let s = &*store;
    assert!(
        ok(s.logs(LogQuery::default()).await, "logs").is_empty(),
        "a new store has no logs"
    );
    let a = create(s, NewTask::new("a")).await.id;
    let b = create(s, NewTask::new("b")).await.id;
    let alice = agent("alice");
    let inputs = [
        LogEntry::new(Direction::In, "prompt", serde_json::json!("What next?"))
            .task(a)
            .step(1)
            .agent(Some(alice.clone())),
        LogEntry::new(
            Direction::Out,
            "proposal",
            serde_json::json!({"command": "ls"}),
        )
        .task(b),
        LogEntry::new(
            Direction::Out,
            "status",
            serde_json::json!({"hub": "started"}),
        ),
        LogEntry::new(Direction::In, "command", serde_json::json!("ls"))
            .task(a)
            .step(1),
        LogEntry::new(
            Direction::Out,
            "output",
            serde_json::json!({"stdout": "x\ny", "code": 0}),
        )
        .task(a)
        .step(1),
        LogEntry::new(Direction::Out, "error", serde_json::json!(null)).task(b),
        LogEntry::new(
            Direction::Out,
            "status",
            serde_json::json!(["done", 1, true]),
        )
        .task(a),
    ];
    let mut appended = Vec::new();
    for input in &inputs {
        let entry = ok(s.append_log(input.clone()).await, "append_log");
        assert!(entry.seq > 0, "seq is assigned");
        if let Some(prev) = appended.last().map(|e: &LogEntry| e.seq) {
            assert!(
                entry.seq > prev,
                "seq grows strictly: {} after {prev}",
                entry.seq
            );
        }
        let mut expected = input.clone();
        expected.seq = entry.seq;
        assert_same_logs(
            std::slice::from_ref(&expected),
            std::slice::from_ref(&entry),
            "append_log",
        );
        appended.push(entry);
    }
    let pick = |idx: &[usize]| idx.iter().map(|&i| appended[i].clone()).collect::<Vec<_>>();
    let query = |q: LogQuery| async move { ok(s.logs(q).await, "logs") };

    assert_same_logs(
        &appended,
        &query(LogQuery::default()).await,
        "all logs, ascending",
    );
    assert_same_logs(
        &pick(&[0, 3, 4, 6]),
        &query(LogQuery::task(a)).await,
        "task a",
    );
    assert_same_logs(&pick(&[1, 5]), &query(LogQuery::task(b)).await, "task b");
    assert_same_logs(
        &[],
        &query(LogQuery::task(TaskId::new())).await,
        "unknown task",
    );
    assert_same_logs(
        &pick(&[4, 6]),
        &query(LogQuery::task(a).limit(2)).await,
        "task a, latest 2",
    );
    assert_same_logs(
        &pick(&[4, 5, 6]),
        &query(LogQuery::default().limit(3)).await,
        "latest 3",
    );
    assert_same_logs(
        &appended,
        &query(LogQuery::default().limit(100)).await,
        "limit above count",
    );
    assert_same_logs(&[], &query(LogQuery::default().limit(0)).await, "limit 0");
}

/// `before_seq` pages backwards: latest page first, each page ascending, no gaps or repeats.
pub async fn log_paging(store: DynStore) {
    let s = &*store;
    let a = create(s, NewTask::new("a")).await.id;
    let b = create(s, NewTask::new("b")).await.id;
    let mut of_a = Vec::new();
    let mut all = Vec::new();
    for i in 0..10 {
        for task in [a, b] {
            let entry =
                LogEntry::new(Direction::Out, "output", serde_json::json!({"line": i})).task(task);
            let entry = ok(s.append_log(entry).await, "append_log");
            if task == a {
                of_a.push(entry.clone());
            }
            all.push(entry);
        }
    }
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let q = LogQuery {
            task_id: Some(a),
            before_seq: before,
            limit: Some(3),
        };
        let page = ok(s.logs(q).await, "logs page");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3, "a page has at most `limit` entries");
        assert!(
            page.windows(2).all(|w| w[0].seq < w[1].seq),
            "a page is ascending"
        );
        before = Some(page[0].seq);
        pages.push(page);
        assert!(pages.len() <= 10, "paging must end");
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![3, 3, 3, 1],
        "page sizes"
    );
    let joined: Vec<LogEntry> = pages.into_iter().rev().flatten().collect();
    assert_same_logs(
        &of_a,
        &joined,
        "pages joined oldest first are the task's log",
    );

    let first = all[0].seq;
    let before_first = LogQuery {
        before_seq: Some(first),
        ..LogQuery::default()
    };
    assert_same_logs(
        &[],
        &ok(s.logs(before_first).await, "logs"),
        "nothing before the first seq",
    );
    let mid = all[10].seq;
    let q = LogQuery {
        before_seq: Some(mid),
        ..LogQuery::default()
    };
    assert_same_logs(
        &all[..10],
        &ok(s.logs(q).await, "logs"),
        "before_seq without a task",
    );
    let q = LogQuery {
        before_seq: Some(mid),
        limit: Some(4),
        ..LogQuery::default()
    };
    assert_same_logs(
        &all[6..10],
        &ok(s.logs(q).await, "logs"),
        "before_seq with limit",
    );
}
