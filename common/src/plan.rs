//! The validated run plan: what every worker runs. The master builds it once from the
//! scenario file ([`crate::scenario::load`]) and ships it as JSON in `Welcome`; nothing
//! downstream re-validates. Secrets inside templates are marked and print as `***`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::micros;
use crate::template::Template;

/// Bumped when the plan's JSON changes incompatibly.
pub const PLAN_FORMAT: u32 = 1;

/// The whole plan of a run, as the workers receive it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunPlan {
    /// [`PLAN_FORMAT`] of the master that built it; a worker refuses another.
    pub format: u32,
    /// Scenario file the plan came from, for messages.
    pub source: String,
    /// Default target (`http://host:port`), overridden by `-H/--host`.
    pub host: Option<String>,
    /// The user classes (`[[users]]`), in file order.
    pub classes: Vec<UserClass>,
    /// Data pools by name, used as `{{name}}` in templates.
    pub pools: BTreeMap<String, Pool>,
    /// Stats entries; `Task::endpoint` indexes this list.
    pub endpoints: Vec<Endpoint>,
    /// `[limits]`: bounds and timeouts of the workers' HTTP client.
    pub limits: Limits,
    /// Fixed addresses for host names (like curl's --resolve): users are spread over
    /// them and recorded per address, as for a host that resolves to several.
    #[serde(default)]
    pub resolve: BTreeMap<String, Vec<std::net::SocketAddr>>,
}

/// A list of values a template draws from.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct Pool {
    /// The values, in file order (never printed when `secret`).
    pub entries: Vec<String>,
    /// How a request picks one.
    pub mode: PoolMode,
    /// Entries came from environment variables (API keys): never printed.
    pub secret: bool,
    /// A column of a CSV pool: the columns of one file share this number, and one
    /// request takes all of them from the same row.
    #[serde(default)]
    pub row_group: Option<u32>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: Vec<&str> = if self.secret {
            self.entries.iter().map(|_| crate::template::REDACTED).collect()
        } else {
            self.entries.iter().map(String::as_str).collect()
        };
        f.debug_struct("Pool")
            .field("entries", &shown)
            .field("mode", &self.mode)
            .finish()
    }
}

/// How a pool entry is chosen for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolMode {
    /// A random entry each time.
    Random,
    /// Entries in order, round robin (per user: each user walks the list).
    Sequential,
    /// One fixed entry per virtual user (e.g. one API key per user).
    PerUser,
}

/// One `[[users]]` class: how its virtual users behave.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserClass {
    /// Unique name (`User1`, ... when the file gives none); selectable on the command line.
    pub name: String,
    /// Share of the (non-fixed) users this class gets, relative to the others; 0 = none.
    pub weight: u32,
    /// Exactly this many users cluster-wide, placed before the weighted classes.
    #[serde(default)]
    pub fixed_count: Option<u32>,
    /// Time between a user's tasks.
    pub wait: Wait,
    /// This class's own target; it wins over `-H` and the plan's host.
    pub host: Option<String>,
    /// How each user picks its next task.
    pub order: TaskOrder,
    /// Run once per user, in order, before the task loop.
    #[serde(default)]
    pub on_start: Vec<Task>,
    /// The task loop; at least one task has a weight above 0.
    pub tasks: Vec<Task>,
}

/// How a user picks its next task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskOrder {
    /// At random, in proportion to the tasks' weights: each cycle of `sum(weights)`
    /// picks holds every task exactly `weight` times, in random order.
    Weighted,
    /// In the order written, round robin.
    Sequential,
}

/// One stats row: requests with the same name and method are counted together.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Endpoint {
    /// The task's `name`, or its path with secrets redacted.
    pub name: String,
    /// HTTP method, upper case.
    pub method: String,
    /// Plain HTTP or a stream: which report columns apply.
    pub kind: TaskKindTag,
}

/// A task kind without its settings: what a stats row (and the wire) needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKindTag {
    /// A request and its whole answer.
    Http,
    /// A Server-Sent Events stream (`kind = "sse"` or `"dify"`).
    Sse,
}

/// One validated task: the request a user sends and how its answer is judged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Task {
    /// Its stats row's name (see [`Endpoint::name`]).
    pub name: String,
    /// Index into `RunPlan::endpoints`.
    pub endpoint: usize,
    /// HTTP method, upper case.
    pub method: String,
    /// Request path and query, starting with `/`.
    pub path: Template,
    /// Request headers: lower-case name and value template.
    pub headers: Vec<(String, Template)>,
    /// Request body, if any (`body` or `json`).
    pub body: Option<Template>,
    /// The body came from a `json` table: values rendered into it are JSON-escaped.
    #[serde(default)]
    pub json_body: bool,
    /// Business events one successful request carries (a batch endpoint: 20); the
    /// report's business-event throughput counts them. Same for every task of a row.
    #[serde(default = "one")]
    pub events_per_request: u32,
    /// How often the task is picked relative to its class's others; 0 = never.
    pub weight: u32,
    /// Whole-request timeout (for SSE: the whole stream).
    #[serde(with = "micros")]
    pub timeout: Duration,
    /// Status codes that count as success; empty = any 2xx.
    pub expect: Vec<u16>,
    /// Plain HTTP or a stream, with the stream's settings.
    pub kind: TaskKind,
    /// Whether the user's connection is kept between requests.
    pub connection: ConnectionPolicy,
    /// Selected with `--tags` / `--exclude-tags`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Values taken from the response into the user's variables.
    #[serde(default)]
    pub capture: Vec<(String, Capture)>,
    /// Assertions on a successful answer's body; a failed one is failure `check`
    /// with the check's name as its detail.
    #[serde(default)]
    pub checks: Vec<Check>,
    /// Per-request objectives (`goodput = {..}`, else the scenario's `[goodput]`): a
    /// successful request that meets them all counts as good. `None` = the task's row
    /// shows no goodput. Absent in plans of masters before goodput.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goodput: Option<crate::goodput::Slo>,
}

/// One named assertion on a response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Names the failure (`check` kind, this detail) when the rule does not hold.
    pub name: String,
    /// What must hold.
    pub rule: CheckRule,
}

/// What a [`Check`] asserts about a response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckRule {
    /// The body is JSON and this pointer exists in it.
    JsonExists(String),
    /// The body is JSON and the value at the pointer is `text` if a string, else
    /// `value`: `text` read as JSON (`true`, `3`), parsed once at validation.
    JsonEquals {
        /// JSON pointer into the body (`/data/status`).
        pointer: String,
        /// The expected value as written.
        text: String,
        /// `text` parsed as JSON, when it is JSON.
        value: Option<serde_json::Value>,
    },
    /// The body (its first 256 KiB) contains this text.
    BodyContains(String),
}

/// Where a captured value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capture {
    /// A JSON pointer into the response body (`/data/id`).
    Json(String),
    /// A response header (lower case).
    Header(String),
}

/// How a task uses its user's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionPolicy {
    /// Reuse the user's connection (like a browser).
    KeepAlive,
    /// A new connection per request, so kube-proxy spreads requests over replicas.
    PerRequest,
}

/// How a task's answer is read and judged.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum TaskKind {
    /// A request and its whole answer, judged by status (and checks).
    Http,
    /// A Server-Sent Events stream, read to its end or terminal event.
    Sse(SseSpec),
}

impl TaskKind {
    /// The kind without its settings.
    pub fn tag(&self) -> TaskKindTag {
        match self {
            TaskKind::Http => TaskKindTag::Http,
            TaskKind::Sse(_) => TaskKindTag::Sse,
        }
    }
}

/// How a stream is judged: its end, its timeouts, Dify's rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SseSpec {
    /// The event type that ends a successful stream (Dify workflows:
    /// `workflow_finished`); `None` = a clean end of stream is success.
    pub terminal_event: Option<String>,
    /// No first event within this long: failure `first_event_timeout`.
    #[serde(with = "micros")]
    pub first_event_timeout: Duration,
    /// Nothing read for this long: failure `read_timeout` (Dify pings every 10 s).
    #[serde(with = "micros")]
    pub read_timeout: Duration,
    /// Dify semantics (`kind = "dify"`): which app type decides success.
    pub dify: Option<DifySpec>,
}

/// Dify's rules for a stream (`kind = "dify"`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DifySpec {
    /// The app type, which decides the terminal events.
    pub app: DifyApp,
    /// Chat apps: start a new conversation after this many turns (0 = every request).
    pub conversation_turns: u32,
    /// On a hard stop, ask dify-api to stop in-flight tasks
    /// (`POST /v1/workflows/tasks/{id}/stop`) so the target is not left running.
    pub stop_on_cancel: bool,
}

/// Dify app types, each with its own terminal events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DifyApp {
    /// `workflow_finished` with `status == "succeeded"`.
    Workflow,
    /// `message_end`.
    Chat,
    /// Advanced chat: both `message_end` and a succeeded `workflow_finished`, in either
    /// order (dify-api sends `workflow_finished` first).
    Chatflow,
    /// Agent chat: `message_end`.
    Agent,
}

impl DifyApp {
    /// The app type `app = "..."` names, with Dify's own aliases (`advanced-chat`).
    pub fn parse(s: &str) -> Option<DifyApp> {
        match s {
            "workflow" => Some(DifyApp::Workflow),
            "chat" | "completion" => Some(DifyApp::Chat),
            "chatflow" | "advanced-chat" => Some(DifyApp::Chatflow),
            "agent" | "agent-chat" => Some(DifyApp::Agent),
            _ => None,
        }
    }

    /// The app type a Service API path implies.
    pub fn from_path(path: &str) -> Option<DifyApp> {
        if path.starts_with("/v1/workflows/") {
            Some(DifyApp::Workflow)
        } else if path.starts_with("/v1/chat-messages") || path.starts_with("/v1/completion-messages") {
            Some(DifyApp::Chat)
        } else {
            None
        }
    }

    /// The path to stop a running task of this app type.
    pub fn stop_path(self, task_id: &str) -> String {
        match self {
            DifyApp::Workflow => format!("/v1/workflows/tasks/{task_id}/stop"),
            _ => format!("/v1/chat-messages/{task_id}/stop"),
        }
    }
}

/// Time a user leaves between its tasks (`wait = "between(1, 3)"`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Wait {
    /// Sleep this long after each task.
    Constant(#[serde(with = "micros")] Duration),
    /// Sleep uniformly between the two after each task.
    Between(#[serde(with = "micros")] Duration, #[serde(with = "micros")] Duration),
    /// Start a task every this long (minus the task's own time).
    Pacing(#[serde(with = "micros")] Duration),
}

/// `[limits]`: bounds and timeouts of the workers' HTTP client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Limits {
    /// Largest SSE line or event accepted before the stream fails `event_too_large`.
    pub sse_max_event_bytes: usize,
    /// Longest a TCP connect (and TLS handshake) may take: failure `connect`.
    #[serde(with = "micros")]
    pub connect_timeout: Duration,
    /// Accept any TLS certificate from https targets (self-signed clusters).
    #[serde(default)]
    pub tls_insecure: bool,
    /// How often a worker looks its target hosts up again (Kubernetes Services change:
    /// a restarted pod has a new IP). Never inside a request: users connect to the
    /// addresses of the last lookup.
    #[serde(with = "micros", default = "default_dns_refresh")]
    pub dns_refresh: Duration,
}

/// The default of [`Limits::dns_refresh`].
pub const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(30);

fn default_dns_refresh() -> Duration {
    DEFAULT_DNS_REFRESH
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            sse_max_event_bytes: 1 << 20,
            connect_timeout: Duration::from_secs(10),
            tls_insecure: false,
            dns_refresh: DEFAULT_DNS_REFRESH,
        }
    }
}

impl RunPlan {
    /// Whether some task of stats row `endpoint` has goodput objectives: the report
    /// shows goodput for such rows only (a row without objectives shows none, not 100 %).
    pub fn endpoint_has_goodput(&self, endpoint: usize) -> bool {
        self.classes
            .iter()
            .flat_map(|c| c.tasks.iter().chain(&c.on_start))
            .any(|t| t.endpoint == endpoint && t.goodput.is_some())
    }

    /// Every secret value in the plan, for redacting outputs.
    pub fn secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for task in self.classes.iter().flat_map(|c| c.tasks.iter().chain(&c.on_start)) {
            let templates = std::iter::once(&task.path)
                .chain(task.headers.iter().map(|(_, t)| t))
                .chain(task.body.iter());
            out.extend(templates.flat_map(|t| t.secrets()).map(str::to_string));
        }
        for pool in self.pools.values().filter(|p| p.secret) {
            out.extend(pool.entries.iter().cloned());
        }
        out.sort();
        out.dedup();
        out
    }

    /// The plan as JSON, as `Welcome` carries it to the workers.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain data structs with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a plan sent by the master, refusing another [`PLAN_FORMAT`].
    pub fn from_json(bytes: &[u8]) -> crate::Result<Self> {
        let plan: RunPlan = serde_json::from_slice(bytes)
            .map_err(|e| crate::Error::Protocol(format!("run plan does not decode: {e}")))?;
        if plan.format != PLAN_FORMAT {
            return Err(crate::Error::Protocol(format!(
                "run plan format {} but this worker understands {PLAN_FORMAT}",
                plan.format
            )));
        }
        Ok(plan)
    }
}

fn one() -> u32 {
    1
}
