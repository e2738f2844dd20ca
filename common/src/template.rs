//! Request templates: the path, header values and body of a task.
//!
//! Two kinds of placeholder:
//! - `{{name}}` is filled per request on the worker: a data pool (`{{question}}`) or a
//!   builtin (`{{user}}`, `{{iteration}}`, `{{worker}}`, `{{uuid}}`).
//! - `${NAME}` is an environment variable read once on the master when the scenario is
//!   validated. Its value is a secret: it travels to the workers inside the plan, but
//!   every printable form of a template ([`Template::redacted`], `Debug`) shows `***`.

use serde::{Deserialize, Serialize};

/// Builtin `{{...}}` variables every template may use.
pub const BUILTIN_VARS: &[&str] = &["user", "iteration", "worker", "conversation_id", "uuid"];

/// What a secret looks like in every printable output.
pub const REDACTED: &str = "***";

/// A text with `{{var}}` placeholders and resolved `${NAME}` secrets, parsed once and
/// rendered per request; its secrets print as [`REDACTED`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Part {
    Lit(String),
    Var(String),
    /// The resolved value of `${NAME}`; `name` kept for messages.
    Secret {
        name: String,
        value: String,
    },
}

impl Template {
    /// Parses `text`; `env` resolves `${NAME}` (None = not set, an error).
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while !rest.is_empty() {
            let next_var = rest.find("{{");
            let next_env = rest.find("${");
            let (at, is_var) = match (next_var, next_env) {
                (None, None) => break,
                (Some(v), Some(e)) if e < v => (e, false),
                (Some(v), _) => (v, true),
                (None, Some(e)) => (e, false),
            };
            lit.push_str(&rest[..at]);
            let after = &rest[at + 2..];
            let close = if is_var { "}}" } else { "}" };
            let Some(end) = after.find(close) else {
                let open = if is_var { "{{" } else { "${" };
                return Err(format!("unclosed `{open}` in \"{text}\""));
            };
            let name = after[..end].trim();
            // `{{pool.column}}` names a column of a CSV pool.
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || (is_var && c == '.'))
            {
                return Err(format!(
                    "`{name}` is not a variable name (letters, digits and _ only; `.` between a CSV pool and its column) in \"{text}\""
                ));
            }
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            if is_var {
                parts.push(Part::Var(name.to_string()));
            } else {
                let value = env(name)
                    .ok_or_else(|| format!("environment variable `{name}` is not set (used as ${{{name}}})"))?;
                parts.push(Part::Secret {
                    name: name.to_string(),
                    value,
                });
            }
            rest = &after[end + close.len()..];
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template { parts })
    }

    /// A template that is exactly `text`, no placeholders.
    pub fn literal(text: &str) -> Self {
        Template {
            parts: vec![Part::Lit(text.to_string())],
        }
    }

    /// The `{{...}}` variable names used.
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            _ => None,
        })
    }

    /// Every secret value embedded, for redaction of outputs.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Secret { value, .. } => Some(value.as_str()),
            _ => None,
        })
    }

    /// Appends the rendered text to `out`; `var` appends the value of a `{{name}}`.
    pub fn render_into(&self, out: &mut String, var: &mut dyn FnMut(&str, &mut String)) {
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Var(name) => var(name, out),
                Part::Secret { value, .. } => out.push_str(value),
            }
        }
    }

    /// Like [`Template::render_into`], for a template that is JSON text with the
    /// variables inside its strings (a `json` body): what variables and secrets
    /// render is escaped as JSON string content, so a value holding quotes,
    /// backslashes or newlines cannot break the document or add fields to it.
    pub fn render_json_into(&self, out: &mut String, var: &mut dyn FnMut(&str, &mut String)) {
        let mut value = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Var(name) => {
                    value.clear();
                    var(name, &mut value);
                    escape_json_into(out, &value);
                }
                Part::Secret { value, .. } => escape_json_into(out, value),
            }
        }
    }

    /// The template as written, with secrets shown as `***`.
    pub fn redacted(&self) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Var(name) => {
                    out.push_str("{{");
                    out.push_str(name);
                    out.push_str("}}");
                }
                Part::Secret { .. } => out.push_str(REDACTED),
            }
        }
        out
    }
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

/// Appends `text` escaped as the inside of a JSON string.
fn escape_json_into(out: &mut String, text: &str) {
    use std::fmt::Write;
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "KEY").then(|| "s3cret".to_string())
    }

    fn render(t: &Template) -> String {
        let mut out = String::new();
        t.render_into(&mut out, &mut |name, out| {
            out.push('<');
            out.push_str(name);
            out.push('>');
        });
        out
    }

    #[test]
    fn renders_vars_and_secrets() {
        let t = Template::parse("Bearer ${KEY} for {{user}}: {{ question }}!", &env).unwrap();
        assert_eq!(render(&t), "Bearer s3cret for <user>: <question>!");
        assert_eq!(t.vars().collect::<Vec<_>>(), ["user", "question"]);
        assert_eq!(t.secrets().collect::<Vec<_>>(), ["s3cret"]);
    }

    #[test]
    fn secrets_never_print() {
        let t = Template::parse("Bearer ${KEY}", &env).unwrap();
        assert_eq!(t.redacted(), "Bearer ***");
        assert!(!format!("{t:?}").contains("s3cret"));
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(
            Template::parse("${MISSING}", &env)
                .unwrap_err()
                .contains("`MISSING` is not set")
        );
        assert!(Template::parse("{{user", &env).unwrap_err().contains("unclosed `{{`"));
        assert!(
            Template::parse("{{a b}}", &env)
                .unwrap_err()
                .contains("not a variable name")
        );
    }

    #[test]
    fn plain_text_and_json_braces_survive() {
        let t = Template::parse(r#"{"inputs": {"q": "{{q}}"}}"#, &env).unwrap();
        assert_eq!(render(&t), r#"{"inputs": {"q": "<q>"}}"#);
    }
}
