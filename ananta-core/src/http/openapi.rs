//! The route tables of both roles and the OpenAPI document built from them.
//!
//! Each table lists every endpoint with its method, path, the access it needs, and the types
//! of its query, body and answer. The authentication middleware reads the access from it, and
//! the OpenAPI document's schemas are generated with `schemars` from the same types the
//! handlers (de)serialize, so the three cannot drift apart.

use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{Map, Value, json};

use super::auth::{Access, LoginRequest, LoginResponse};
use super::error::ErrorBody;
use super::types::{
    AssignBody, CommandBody, EventsQuery, HealthResponse, HubSettings, HubStepBody, LogsQuery,
    PatchQuery, RegisterRequest, RegisterResponse, RejectBody, RotateResponse, RunBody,
    RunStartedResponse, TasksQuery, WorkerExecuteBody, WorkerProposeBody,
};
use crate::agent::AgentInfo;
use crate::event::Event;
use crate::log::LogEntry;
use crate::task::{NewTask, Proposed, StepRecord, Task, TaskUpdate};
use crate::template::{NewTemplate, Template, TemplateUpdate};
use crate::worker::WorkerConfig;

/// Produces a schema (a `$ref` into the document's components for named types).
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn s<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

fn root<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.root_schema_for::<T>()
}

fn any_json(_: &mut SchemaGenerator) -> Schema {
    Schema::default()
}

/// One endpoint.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    /// `GET`, `POST`, `PATCH` or `DELETE`.
    pub method: &'static str,
    /// The path, with `{name}` parameters.
    pub path: &'static str,
    /// What the caller needs.
    pub access: Access,
    /// The handler checks credentials itself (`/register` also takes a registration secret).
    pub own_auth: bool,
    /// One line on what it does.
    pub summary: &'static str,
    /// Query parameters (an object schema; each property is a parameter).
    pub query: Option<SchemaFn>,
    /// The JSON body.
    pub body: Option<SchemaFn>,
    /// The body may be left out.
    pub body_optional: bool,
    /// The status of success.
    pub status: u16,
    /// The success body (`None`: no body).
    pub response: Option<SchemaFn>,
    /// The success answer is a stream of server-sent events (each `data` is this schema).
    pub stream: bool,
}

const fn route(method: &'static str, path: &'static str, access: Access) -> RouteSpec {
    RouteSpec {
        method,
        path,
        access,
        own_auth: false,
        summary: "",
        query: None,
        body: None,
        body_optional: false,
        status: 200,
        response: None,
        stream: false,
    }
}

impl RouteSpec {
    const fn summary(mut self, summary: &'static str) -> Self {
        self.summary = summary;
        self
    }
    const fn query(mut self, query: SchemaFn) -> Self {
        self.query = Some(query);
        self
    }
    const fn body(mut self, body: SchemaFn) -> Self {
        self.body = Some(body);
        self
    }
    const fn optional_body(mut self, body: SchemaFn) -> Self {
        self.body = Some(body);
        self.body_optional = true;
        self
    }
    const fn ok(mut self, status: u16, response: Option<SchemaFn>) -> Self {
        self.status = status;
        self.response = response;
        self
    }
    const fn stream(mut self, data: SchemaFn) -> Self {
        self.stream = true;
        self.response = Some(data);
        self
    }
    const fn own_auth(mut self) -> Self {
        self.own_auth = true;
        self
    }

    /// The path with every `{param}` replaced by `value` (for tests and clients).
    pub fn path_with(&self, value: &str) -> String {
        let mut out = String::new();
        let mut rest = self.path;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            match rest[start..].find('}') {
                Some(end) => {
                    out.push_str(value);
                    rest = &rest[start + end + 1..];
                }
                None => {
                    rest = &rest[start..];
                    break;
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// Whether the route changes something (every method but `GET`).
    pub fn is_write(&self) -> bool {
        self.method != "GET"
    }
}

use Access::{Admin, Public, Read, Write};

/// The endpoints both roles serve.
macro_rules! common_routes {
    () => {
        [
            route("GET", "/health", Public)
                .summary("Liveness: {\"status\": \"ok\", \"name\", \"role\"}")
                .ok(200, Some(s::<HealthResponse>)),
            route("GET", "/openapi.json", Read)
                .summary("This document")
                .ok(200, Some(any_json)),
            route("POST", "/login", Public)
                .summary("A user logs in and gets a JWT carrying their role")
                .body(s::<LoginRequest>)
                .ok(200, Some(s::<LoginResponse>)),
            route("POST", "/rotate-token", Admin)
                .summary(
                    "Makes a new AGENT_TOKEN (a worker tells its hub first), then switches to it",
                )
                .ok(200, Some(s::<RotateResponse>)),
        ]
    };
}

/// Every endpoint of [`hub_router`](super::hub_router).
pub static HUB_ROUTES: &[RouteSpec] = &{
    let c = common_routes!();
    [
        c[0],
        c[1],
        c[2],
        c[3],
        route("GET", "/config", Read)
            .summary("How the hub watches its agents")
            .ok(200, Some(s::<HubSettings>)),
        route("POST", "/config", Admin)
            .summary("Changes any subset of the settings")
            .body(s::<HubSettings>)
            .ok(200, Some(s::<HubSettings>)),
        route("POST", "/step/propose", Write)
            .summary("Asks the assigned agent of `task_id` for the next step")
            .body(s::<HubStepBody>)
            .ok(200, Some(s::<Proposed>)),
        route("POST", "/step/execute", Write)
            .summary("Lets the assigned agent of `task_id` run a step")
            .body(s::<HubStepBody>)
            .ok(200, Some(s::<StepRecord>)),
        route("GET", "/logs", Read)
            .summary("The latest log entries (`limit`, `task_id`, `before_seq`)")
            .query(root::<LogsQuery>)
            .ok(200, Some(s::<Vec<LogEntry>>)),
        route("POST", "/register", Write)
            .own_auth()
            .summary("A worker registers (and, sent again on an interval, heartbeats); needs a write credential or the registration secret")
            .body(s::<RegisterRequest>)
            .ok(200, Some(s::<RegisterResponse>)),
        route("GET", "/agents", Read)
            .summary("All agents with their liveness")
            .ok(200, Some(s::<Vec<AgentInfo>>)),
        route("GET", "/agents/{name}", Read)
            .summary("One agent")
            .ok(200, Some(s::<AgentInfo>)),
        route("DELETE", "/agents/{name}", Admin)
            .summary("Removes an agent")
            .ok(204, None),
        route("GET", "/templates", Read)
            .summary("All templates")
            .ok(200, Some(s::<Vec<Template>>)),
        route("POST", "/templates", Admin)
            .summary("Creates a template")
            .body(s::<NewTemplate>)
            .ok(201, Some(s::<Template>)),
        route("GET", "/templates/{id}", Read)
            .summary("One template")
            .ok(200, Some(s::<Template>)),
        route("PATCH", "/templates/{id}", Admin)
            .summary("Changes a template")
            .body(s::<TemplateUpdate>)
            .ok(200, Some(s::<Template>)),
        route("DELETE", "/templates/{id}", Admin)
            .summary("Deletes a template (409 while a task uses it)")
            .ok(204, None),
        route("GET", "/tasks", Read)
            .summary("Tasks (`status=todo,in_progress`, `agent`, `tag`, `limit`)")
            .query(root::<TasksQuery>)
            .ok(200, Some(s::<Vec<Task>>)),
        route("POST", "/tasks", Write)
            .summary("Creates a task")
            .body(s::<NewTask>)
            .ok(201, Some(s::<Task>)),
        route("GET", "/tasks/{id}", Read)
            .summary("One task with its steps")
            .ok(200, Some(s::<Task>)),
        route("PATCH", "/tasks/{id}", Write)
            .summary("Changes fields; status changes follow the transition table (409 otherwise)")
            .query(root::<PatchQuery>)
            .body(s::<TaskUpdate>)
            .ok(200, Some(s::<Task>)),
        route("DELETE", "/tasks/{id}", Write)
            .summary("Deletes a task (its logs stay)")
            .ok(204, None),
        route("POST", "/tasks/{id}/assign", Write)
            .summary("Assigns the task to an agent, by name or by URL with its token")
            .body(s::<AssignBody>)
            .ok(200, Some(s::<Task>)),
        route("POST", "/tasks/{id}/step/propose", Write)
            .summary("Asks the assigned agent for the next step (forwarded with the agent's token); a body, e.g. the original Ananta's `prompt`, is accepted and ignored: the task's template and history make the prompt")
            .optional_body(any_json)
            .ok(200, Some(s::<Proposed>)),
        route("POST", "/tasks/{id}/step/execute", Write)
            .summary("Runs the proposal (or `command`) on the assigned agent; 409 approval_required, 403 command_denied")
            .optional_body(s::<CommandBody>)
            .ok(200, Some(s::<StepRecord>)),
        route("POST", "/tasks/{id}/approve", Write)
            .summary("Approves the command a task waits on (or an edited `command`) and runs it")
            .optional_body(s::<CommandBody>)
            .ok(200, Some(s::<StepRecord>)),
        route("POST", "/tasks/{id}/reject", Write)
            .summary("Rejects the command a task waits on")
            .optional_body(s::<RejectBody>)
            .ok(200, Some(s::<Task>)),
        route("POST", "/tasks/{id}/run", Write)
            .summary("Starts the autonomous loop on the hub and answers at once; progress on GET /events, the end as `task_run_finished`; 409 run_in_progress")
            .optional_body(s::<RunBody>)
            .ok(202, Some(s::<RunStartedResponse>)),
        route("DELETE", "/tasks/{id}/run", Write)
            .summary("Cancels the task's run (404 no_run when none runs)")
            .ok(204, None),
        route("GET", "/tasks/{id}/logs", Read)
            .summary("The task's log; with `follow=true` a live stream of server-sent events")
            .query(root::<LogsQuery>)
            .ok(200, Some(s::<Vec<LogEntry>>)),
        route("GET", "/events", Read)
            .summary("The hub's events as server-sent events (`task_id` filters)")
            .query(root::<EventsQuery>)
            .stream(s::<Event>),
    ]
};

/// Every endpoint of [`worker_router`](super::worker_router).
pub static WORKER_ROUTES: &[RouteSpec] = &{
    let c = common_routes!();
    [
        c[0],
        c[1],
        c[2],
        c[3],
        route("GET", "/config", Read)
            .summary("The worker's model settings")
            .ok(200, Some(s::<WorkerConfig>)),
        route("POST", "/config", Admin)
            .summary("Changes any subset of the model settings")
            .body(s::<WorkerConfig>)
            .ok(200, Some(s::<WorkerConfig>)),
        route("POST", "/step/propose", Write)
            .summary("Asks the LLM for the next command of a task (or of a one-off `prompt`)")
            .body(s::<WorkerProposeBody>)
            .ok(200, Some(s::<Proposed>)),
        route("POST", "/step/execute", Write)
            .summary("Runs a command under the worker's policy; an `idempotency-key` header makes retries safe")
            .body(s::<WorkerExecuteBody>)
            .ok(200, Some(s::<StepRecord>)),
        route("GET", "/logs", Read)
            .summary("The worker's own log (`limit`, `task_id`)")
            .query(root::<LogsQuery>)
            .ok(200, Some(s::<Vec<LogEntry>>)),
    ]
};

/// The OpenAPI 3.0 document of `routes`.
pub fn openapi_document(title: &str, routes: &[RouteSpec]) -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let error = s::<ErrorBody>(&mut generator);
    let mut paths: Map<String, Value> = Map::new();
    for r in routes {
        let mut op = Map::new();
        op.insert("summary".into(), json!(r.summary));
        op.insert(
            "operationId".into(),
            json!(format!(
                "{}{}",
                r.method.to_lowercase(),
                r.path
                    .replace(['/', '{', '}', '-', '.'], "_")
                    .trim_end_matches('_')
            )),
        );
        let mut parameters = Vec::new();
        for name in r.path.split('/').filter_map(|seg| {
            seg.strip_prefix('{')
                .and_then(|rest| rest.strip_suffix('}'))
        }) {
            parameters.push(json!({
                "name": name, "in": "path", "required": true, "schema": {"type": "string"}
            }));
        }
        if let Some(query) = r.query {
            let schema = query(&mut generator);
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (name, prop) in props {
                    parameters.push(json!({
                        "name": name, "in": "query", "required": false, "schema": prop
                    }));
                }
            }
        }
        if !parameters.is_empty() {
            op.insert("parameters".into(), Value::Array(parameters));
        }
        if let Some(body) = r.body {
            op.insert(
                "requestBody".into(),
                json!({
                    "required": !r.body_optional,
                    "content": {"application/json": {"schema": body(&mut generator)}}
                }),
            );
        }
        let success = match (r.response, r.stream) {
            (Some(schema), true) => json!({
                "description": "a stream of server-sent events; each event's data is this JSON",
                "content": {"text/event-stream": {"schema": schema(&mut generator)}}
            }),
            (Some(schema), false) => json!({
                "description": "success",
                "content": {"application/json": {"schema": schema(&mut generator)}}
            }),
            (None, _) => json!({"description": "success, no body"}),
        };
        let mut responses = Map::new();
        responses.insert(r.status.to_string(), success);
        responses.insert(
            "default".into(),
            json!({
                "description": "an error: {\"error\": {\"code\", \"message\", \"details\"?}}",
                "content": {"application/json": {"schema": error}}
            }),
        );
        op.insert("responses".into(), Value::Object(responses));
        if r.access != Access::Public {
            op.insert(
                "security".into(),
                json!([{"bearer": []}, {"token_query": []}]),
            );
        }
        let entry = paths
            .entry(r.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(methods) = entry {
            methods.insert(r.method.to_lowercase(), Value::Object(op));
        }
    }
    let schemas = generator.take_definitions(true);
    json!({
        "openapi": "3.0.3",
        "info": {"title": title, "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "AGENT_TOKEN or a JWT from /login"},
                "token_query": {"type": "apiKey", "in": "query", "name": "token"}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_cover_every_route_with_resolvable_refs() {
        for (title, routes) in [("hub", HUB_ROUTES), ("worker", WORKER_ROUTES)] {
            let doc = openapi_document(title, routes);
            for r in routes {
                assert!(
                    doc["paths"][r.path][r.method.to_lowercase()].is_object(),
                    "{} {} missing",
                    r.method,
                    r.path
                );
            }
            // Every $ref points at a schema in components.
            let text = doc.to_string();
            for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
                let name = part.split('"').next().unwrap();
                assert!(
                    doc["components"]["schemas"][name].is_object(),
                    "{title}: dangling $ref {name}"
                );
            }
            assert!(doc["components"]["schemas"]["Task"].is_object() || title == "worker");
        }
    }

    #[test]
    fn path_parameters_are_filled() {
        let r = route("GET", "/tasks/{id}/logs", Read);
        assert_eq!(r.path_with("T-1"), "/tasks/T-1/logs");
    }
}
