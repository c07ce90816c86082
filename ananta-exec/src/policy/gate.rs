//! The policy as a worker's [`CommandGate`], and what confines the commands it lets through.

use ananta_core::exec::{CommandGate, Decision};
use serde::{Deserialize, Serialize};

use super::{CommandPolicy, PolicyMode};

/// A [`CommandPolicy`] with its mode: the [`CommandGate`] a Worker asks before each
/// command (see [`CommandPolicy::gate`]).
#[derive(Debug, Clone)]
pub struct PolicyGate {
    pub(super) policy: CommandPolicy,
    pub(super) mode: PolicyMode,
    pub(super) containment: Containment,
}

impl PolicyGate {
    /// The mode it decides in.
    pub fn mode(&self) -> PolicyMode {
        self.mode
    }

    /// What confines the commands it lets through.
    pub fn containment(&self) -> Containment {
        self.containment
    }

    /// Decides knowing the commands run with `containment` (e.g.
    /// [`ShellExecutor::containment`](crate::ShellExecutor::containment) of the executor the
    /// worker runs them with): see [`CommandPolicy::decide_contained`].
    pub fn contained(mut self, containment: Containment) -> Self {
        self.containment = containment;
        self
    }
}

impl CommandGate for PolicyGate {
    fn decide(&self, command: &str) -> Decision {
        self.policy
            .decide_contained(command, self.mode, self.containment)
    }
}

/// What stands between an allowed command and the host, besides the policy.
///
/// | mode \ containment | `None` | `Sandbox { network: false }` | `Sandbox { network: true }` |
/// |---|---|---|---|
/// | `ReadOnly` | read-only commands | read-only commands | read-only commands |
/// | `Approve` | safe commands run, the rest asks | all but deny rules run, except pushing, publishing and git internals, which ask | as with no network, and network use asks too |
/// | `Auto` | all but deny rules | all but deny rules | all but deny rules |
/// | `Off` | everything | everything | everything |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
#[non_exhaustive]
pub enum Containment {
    /// Nothing: an allowed command acts with the host process's rights.
    #[default]
    None,
    /// A strict [`crate::sandbox`]: writes stay in the workspace, nothing outside it is read,
    /// no process outlives the run, git hooks and configuration stay as they were.
    Sandbox {
        /// Whether the sandbox lets commands use the network.
        network: bool,
    },
}
