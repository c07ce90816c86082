//! Server-sent events: the hub's event bus (`GET /events`) and a task's log followed live
//! (`GET /tasks/{id}/logs?follow=true`).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use futures::StreamExt;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::extract::ApiQuery;
use super::hub_ctx::HubCtx;
use super::types::{EventsQuery, LogsQuery};
use crate::ids::TaskId;
use crate::log::{LogEntry, LogQuery};

type BoxedEvents = std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, Infallible>> + Send>>;
type SseStream = Sse<axum::response::sse::KeepAliveStream<BoxedEvents>>;

fn sse(stream: impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static) -> SseStream {
    let boxed: BoxedEvents = Box::pin(stream);
    Sse::new(boxed).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// `GET /events?task_id=`: every event from now on (of one task, when filtered; for an
/// orchestration run's task, also those of the run's tasks), each as an
/// SSE event named after its type with the JSON event as data and its sequence number as id.
/// A subscriber too slow to keep up gets a `lagged` event saying how many it missed. The
/// stream ends when the server shuts down.
pub(crate) async fn events(
    State(ctx): State<HubCtx>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> SseStream {
    let receiver = ctx.hub.subscribe();
    let shutdown = ctx.options.shutdown.clone();
    let stream = futures::stream::unfold(receiver, move |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(event) => {
                    if q.task_id.is_some()
                        && event.kind.task_id() != q.task_id
                        && event.kind.run_id() != q.task_id
                    {
                        continue;
                    }
                    let sse = SseEvent::default()
                        .event(event.kind.name())
                        .id(event.seq.to_string())
                        .json_data(&event)
                        .unwrap_or_else(|_| SseEvent::default().event("error"));
                    return Some((Ok(sse), rx));
                }
                Err(RecvError::Lagged(missed)) => {
                    let sse = SseEvent::default()
                        .event("lagged")
                        .data(json!({"missed": missed}).to_string());
                    return Some((Ok(sse), rx));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
    .take_until(shutdown.cancelled_owned());
    sse(stream)
}

fn log_event(entry: &LogEntry) -> SseEvent {
    SseEvent::default()
        .event("log")
        .id(entry.seq.to_string())
        .json_data(entry)
        .unwrap_or_else(|_| SseEvent::default().event("error"))
}

/// The task's entries after `last`, oldest first, paging backwards so none is skipped.
async fn entries_after(ctx: &HubCtx, task: TaskId, last: u64) -> Vec<LogEntry> {
    const PAGE: usize = 500;
    let mut out: Vec<LogEntry> = Vec::new();
    let mut before = None;
    loop {
        let query = LogQuery {
            task_id: Some(task),
            before_seq: before,
            limit: Some(PAGE),
        };
        let page = match ctx.hub.logs(query).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(task = %task, error = %e, "could not read the log to follow");
                break;
            }
        };
        let full = page.len() == PAGE;
        let first = page.first().map(|e| e.seq);
        let reached = first.is_none_or(|f| f <= last + 1);
        let mut newer: Vec<LogEntry> = page.into_iter().filter(|e| e.seq > last).collect();
        newer.append(&mut out);
        out = newer;
        if reached || !full {
            break;
        }
        before = first;
    }
    out
}

/// `GET /tasks/{id}/logs?follow=true`: the latest `limit` entries, then every new entry as it
/// is written, as SSE events named `log` (id = the entry's sequence number). New entries are
/// looked for whenever the hub publishes an event about the task, and at least every second.
/// Live progress of the task (`llm_delta`, `command_output`: the model's answer as it streams
/// and a command's output as it runs, never stored in the log) comes in between as SSE events
/// of those names.
pub(crate) fn follow_logs(ctx: HubCtx, task: TaskId, q: LogsQuery) -> SseStream {
    let shutdown = ctx.options.shutdown.clone();
    let limit = q.limit.unwrap_or(100).min(10_000);
    struct Follow {
        ctx: HubCtx,
        rx: tokio::sync::broadcast::Receiver<crate::event::Event>,
        last: Option<u64>,
        pending: std::collections::VecDeque<LogEntry>,
        live: Option<SseEvent>,
        /// Whether the log may have grown since it was last read.
        recheck: bool,
    }
    let state = Follow {
        rx: ctx.hub.subscribe(),
        ctx,
        last: None,
        pending: Default::default(),
        live: None,
        recheck: true,
    };
    let stream = futures::stream::unfold(state, move |mut st| async move {
        loop {
            if let Some(live) = st.live.take() {
                return Some((Ok(live), st));
            }
            if let Some(entry) = st.pending.pop_front() {
                st.last = Some(entry.seq);
                return Some((Ok(log_event(&entry)), st));
            }
            match st.last {
                None => {
                    let first = st
                        .ctx
                        .hub
                        .logs(LogQuery::task(task).limit(limit))
                        .await
                        .unwrap_or_default();
                    st.last = Some(first.last().map_or(0, |e| e.seq));
                    st.pending.extend(first);
                    continue;
                }
                Some(last) if st.recheck => {
                    let newer = entries_after(&st.ctx, task, last).await;
                    if !newer.is_empty() {
                        st.pending.extend(newer);
                        continue;
                    }
                }
                Some(_) => {}
            }
            // Wait for a hint that the task's log grew, or poll again in a second; live
            // progress of the task goes out as it comes.
            let live = &mut st.live;
            let recheck = &mut st.recheck;
            *recheck = true;
            let wait = async {
                loop {
                    match st.rx.recv().await {
                        Ok(e) if e.kind.task_id() == Some(task) && e.kind.is_progress() => {
                            *live = Some(
                                SseEvent::default()
                                    .event(e.kind.name())
                                    .json_data(&e)
                                    .unwrap_or_else(|_| SseEvent::default().event("error")),
                            );
                            *recheck = false;
                            return;
                        }
                        Ok(e) if e.kind.task_id() == Some(task) => return,
                        Ok(_) => {}
                        Err(RecvError::Lagged(_)) => return,
                        Err(RecvError::Closed) => {
                            std::future::pending::<()>().await;
                        }
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), wait).await;
        }
    })
    .take_until(shutdown.cancelled_owned());
    sse(stream)
}
