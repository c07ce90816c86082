//! Identifiers: sortable, collision-safe task and template ids, agent names and claim tokens.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use ulid::Ulid;

/// Error returned when a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} id {input:?}: {reason}")]
pub struct ParseIdError {
    /// Which kind of id was being parsed (`task`, `template`, `agent`).
    pub kind: &'static str,
    /// The rejected input.
    pub input: String,
    /// Why it was rejected.
    pub reason: String,
}

/// Process-wide monotonic ULID generator: ids made by one process sort in creation order even
/// within one millisecond; the 80 random bits keep ids of different hubs from colliding.
fn next_ulid() -> Ulid {
    static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);
    let mut guard = match GENERATOR.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    let generator = guard.get_or_insert_with(ulid::Generator::new);
    // Overflow only happens after 2^80 ids within one millisecond; fall back to a fresh ULID.
    generator.generate().unwrap_or_else(|_| Ulid::new())
}

macro_rules! ulid_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Ulid);

        impl $name {
            /// The prefix shown before the ULID.
            pub const PREFIX: &'static str = $prefix;

            /// A new id, greater than every id this process made before.
            pub fn new() -> Self {
                Self(next_ulid())
            }

            /// Wraps an existing ULID.
            pub const fn from_ulid(ulid: Ulid) -> Self {
                Self(ulid)
            }

            /// The underlying ULID.
            pub const fn ulid(&self) -> Ulid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", Self::PREFIX, self.0)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            /// Accepts the prefixed form (`T-01J…`) and, for convenience, the bare ULID.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let raw = s.strip_prefix(Self::PREFIX).unwrap_or(s);
                Ulid::from_string(raw).map(Self).map_err(|e| ParseIdError {
                    kind: $kind,
                    input: s.to_string(),
                    reason: e.to_string(),
                })
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = Cow::<'de, str>::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "pattern": concat!("^(", $prefix, ")?[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$"),
                    "description": concat!("A ", $kind, " id: '", $prefix, "' followed by a ULID")
                })
            }
        }
    };
}

ulid_id!(
    /// A task id: a ULID shown with a `T-` prefix (`T-01JD3X…`). Ids sort by creation time and
    /// are safe to create on several hubs at once.
    TaskId,
    "T-",
    "task"
);

ulid_id!(
    /// A template id: a ULID shown with a `TPL-` prefix.
    TemplateId,
    "TPL-",
    "template"
);

/// An agent's id: its unique name (`AGENT_NAME` in the original Ananta), 1–128 characters of letters,
/// digits, `-`, `_` and `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct AgentId(String);

impl AgentId {
    /// Validates and wraps an agent name.
    pub fn new(name: impl Into<String>) -> Result<Self, ParseIdError> {
        let name = name.into();
        let reason = if name.is_empty() {
            Some("must not be empty".to_string())
        } else if name.len() > 128 {
            Some("must be at most 128 bytes".to_string())
        } else {
            name.chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
                .map(|c| format!("character {c:?} is not allowed (use letters, digits, - _ .)"))
        };
        match reason {
            Some(reason) => Err(ParseIdError {
                kind: "agent",
                input: name,
                reason,
            }),
            None => Ok(Self(name)),
        }
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for AgentId {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl<'de> Deserialize<'de> for AgentId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::new(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_ids_are_prefixed_sortable_and_round_trip() {
        let a = TaskId::new();
        let b = TaskId::new();
        assert!(a < b, "ids made later sort later");
        let shown = a.to_string();
        assert!(shown.starts_with("T-"));
        assert_eq!(shown.parse::<TaskId>().ok(), Some(a));
        let bare = shown.trim_start_matches("T-");
        assert_eq!(bare.parse::<TaskId>().ok(), Some(a));
        let json = serde_json::to_string(&a).unwrap_or_default();
        assert_eq!(json, format!("\"{shown}\""));
        assert_eq!(serde_json::from_str::<TaskId>(&json).ok(), Some(a));
    }

    #[test]
    fn bad_ids_are_rejected_with_a_reason() {
        let err = "T-nope".parse::<TaskId>().err();
        assert!(matches!(err, Some(ParseIdError { kind: "task", .. })));
        assert!(serde_json::from_str::<TaskId>("\"\"").is_err());
        assert!(AgentId::new("").is_err());
        assert!(AgentId::new("has space").is_err());
        assert!(AgentId::new("x".repeat(129)).is_err());
        assert!(serde_json::from_str::<AgentId>("\"bad/name\"").is_err());
        assert_eq!(
            AgentId::new("worker-1.a_b")
                .map(|a| a.to_string())
                .ok()
                .as_deref(),
            Some("worker-1.a_b")
        );
    }
}
