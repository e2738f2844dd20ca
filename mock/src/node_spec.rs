//! A workflow as `--workflow-nodes` describes it ([`WorkflowNodes`]): each node's Dify
//! type, title and delay distribution. Played by [`crate::nodes`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Most nodes a workflow may list (Dify's own canvases stay far below).
const MAX_NODES: usize = 256;

/// How long one node takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delay {
    /// Always this long (`200ms`).
    Fixed(Duration),
    /// Uniform between the two, inclusive (`uniform(10ms,30ms)`).
    Uniform(Duration, Duration),
}

impl Delay {
    /// One draw, in whole microseconds.
    pub(crate) fn draw(self) -> Duration {
        match self {
            Delay::Fixed(d) => d,
            Delay::Uniform(lo, hi) => {
                let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
                Duration::from_micros(rand::random_range(micros(lo)..=micros(hi)))
            }
        }
    }
}

/// One node of a described workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    /// Dify's `node_type` (`start`, `llm`, `code`, `end`, ...), also its `node_id`
    /// with its position (`llm-2`).
    pub node_type: String,
    /// The node's `title`.
    pub title: String,
    /// How long it takes.
    pub delay: Delay,
}

/// A workflow as `--workflow-nodes` describes it:
/// `start:Start:0ms,llm:LLM:200ms,code:Code:uniform(10ms,30ms),end:End:0ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowNodes(pub Vec<NodeSpec>);

impl FromStr for WorkflowNodes {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut nodes = Vec::new();
        // Split on commas outside parentheses (`uniform(10ms,30ms)` holds one).
        let (mut depth, mut from) = (0i32, 0);
        let mut parts = Vec::new();
        for (i, c) in s.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    parts.push(&s[from..i]);
                    from = i + 1;
                }
                _ => {}
            }
        }
        parts.push(&s[from..]);
        for part in parts {
            let mut fields = part.trim().splitn(3, ':');
            let (Some(ty), Some(title), Some(delay)) = (fields.next(), fields.next(), fields.next()) else {
                return Err(format!("{part:?} is not TYPE:TITLE:DELAY (e.g. llm:LLM:200ms)"));
            };
            if ty.is_empty() || title.is_empty() {
                return Err(format!("{part:?}: a node needs a type and a title"));
            }
            nodes.push(NodeSpec {
                node_type: ty.to_string(),
                title: title.to_string(),
                delay: parse_delay(delay.trim()).map_err(|e| format!("{part:?}: {e}"))?,
            });
        }
        if nodes.len() > MAX_NODES {
            return Err(format!("{} nodes; at most {MAX_NODES}", nodes.len()));
        }
        Ok(WorkflowNodes(nodes))
    }
}

impl fmt::Display for WorkflowNodes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let delay = match n.delay {
                Delay::Fixed(d) => humantime::format_duration(d).to_string(),
                Delay::Uniform(lo, hi) => format!(
                    "uniform({},{})",
                    humantime::format_duration(lo),
                    humantime::format_duration(hi)
                ),
            };
            write!(f, "{sep}{}:{}:{delay}", n.node_type, n.title)?;
        }
        Ok(())
    }
}

/// `200ms` or `uniform(10ms,30ms)`.
fn parse_delay(s: &str) -> Result<Delay, String> {
    let duration = |d: &str| humantime::parse_duration(d.trim()).map_err(|e| format!("{d:?}: {e}"));
    if let Some(inner) = s.strip_prefix("uniform(").and_then(|r| r.strip_suffix(')')) {
        let (lo, hi) = inner
            .split_once(',')
            .ok_or_else(|| format!("{s:?}: expected uniform(MIN,MAX)"))?;
        let (lo, hi) = (duration(lo)?, duration(hi)?);
        if lo > hi {
            return Err(format!("{s:?}: the minimum is above the maximum"));
        }
        return Ok(Delay::Uniform(lo, hi));
    }
    Ok(Delay::Fixed(duration(s)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_described_workflow_parses_and_prints_back() {
        let text = "start:Start:0s,llm:LLM:200ms,code:Code:uniform(10ms,30ms),end:End:0s";
        let w: WorkflowNodes = text.parse().unwrap();
        assert_eq!(w.0.len(), 4);
        assert_eq!(w.0[1].delay, Delay::Fixed(Duration::from_millis(200)));
        assert_eq!(
            w.0[2].delay,
            Delay::Uniform(Duration::from_millis(10), Duration::from_millis(30))
        );
        assert_eq!(w.to_string(), text);
        for bad in ["llm:LLM", "llm::1s", "llm:LLM:fast", "code:C:uniform(3ms,1ms)"] {
            assert!(bad.parse::<WorkflowNodes>().is_err(), "{bad}");
        }
        for _ in 0..100 {
            let d = w.0[2].delay.draw();
            assert!(Duration::from_millis(10) <= d && d <= Duration::from_millis(30));
        }
    }
}
