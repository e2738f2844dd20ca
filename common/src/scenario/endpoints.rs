//! The stats rows of a plan: every task names one [`Endpoint`] (name, method), and
//! tasks with the same name and method share its row, so they must agree on its kind
//! and on the business events one request carries.

use std::collections::HashMap;

use crate::plan::{Endpoint, TaskKindTag};

/// The endpoints found so far while validating, in order of first use.
#[derive(Debug, Default)]
pub(super) struct Endpoints {
    /// The rows, indexed by `Task::endpoint`.
    pub(super) list: Vec<Endpoint>,
    /// (name, method) -> (index into `list`, events per request of its tasks).
    ids: HashMap<(String, String), (usize, u32)>,
}

impl Endpoints {
    /// The row of a task named `name` sending `method`, added if new. The error is the
    /// task's field at fault (`events_per_request` or `kind`) and its message.
    pub(super) fn row(
        &mut self,
        name: &str,
        method: &str,
        kind: TaskKindTag,
        events_per_request: u32,
    ) -> Result<usize, (&'static str, String)> {
        let key = (name.to_string(), method.to_string());
        if let Some(&(_, other)) = self.ids.get(&key)
            && other != events_per_request
        {
            return Err((
                "events_per_request",
                format!(
                    "another task in the stats row `{name}` ({method}) carries {other}; give this one its own name"
                ),
            ));
        }
        match self.ids.get(&key) {
            Some(&(id, _)) => {
                if self.list[id].kind != kind {
                    return Err((
                        "kind",
                        format!(
                            "another task named `{name}` ({method}) has a different kind; give this one its own name"
                        ),
                    ));
                }
                Ok(id)
            }
            None => {
                self.list.push(Endpoint {
                    name: name.to_string(),
                    method: method.to_string(),
                    kind,
                });
                self.ids.insert(key, (self.list.len() - 1, events_per_request));
                Ok(self.list.len() - 1)
            }
        }
    }
}
