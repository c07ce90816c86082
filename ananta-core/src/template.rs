//! Prompt templates with `{{variable}}` placeholders.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::TemplateError;
use crate::ids::TemplateId;

/// The variables the Worker provides when it renders a task's template.
pub const TASK_VARIABLES: [&str; 6] = [
    "task_id",
    "title",
    "description",
    "tags",
    "priority",
    "status",
];

/// The values of [`TASK_VARIABLES`] for `task`, in that order.
pub fn task_variables(task: &crate::task::Task) -> BTreeMap<String, String> {
    let values = [
        task.id.to_string(),
        task.title.clone(),
        task.description.clone(),
        task.tags.join(", "),
        format!("{:?}", task.priority).to_lowercase(),
        task.status.to_string(),
    ];
    TASK_VARIABLES
        .iter()
        .map(|k| k.to_string())
        .zip(values)
        .collect()
}

/// A prompt template (the original Ananta's `{name, description, prompt_template, provider?, model?, defaults?}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Template {
    /// Id, shown as `TPL-…`.
    pub id: TemplateId,
    /// Unique human name.
    pub name: String,
    /// What the template is for.
    #[serde(default)]
    pub description: String,
    /// The prompt text with `{{variable}}` placeholders.
    pub prompt_template: String,
    /// Preferred provider name, if any.
    #[serde(default)]
    pub provider: Option<String>,
    /// Preferred model, if any.
    #[serde(default)]
    pub model: Option<String>,
    /// Default values for variables the task does not provide.
    #[serde(default)]
    pub defaults: BTreeMap<String, String>,
    /// Acceptance checks every task of this template must also pass (see
    /// [`Task::checks`](crate::Task::checks)).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// The fields a caller gives to create a template.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct NewTemplate {
    /// Unique human name.
    pub name: String,
    /// What the template is for.
    #[serde(default)]
    pub description: String,
    /// The prompt text with `{{variable}}` placeholders.
    pub prompt_template: String,
    /// Preferred provider.
    #[serde(default)]
    pub provider: Option<String>,
    /// Preferred model.
    #[serde(default)]
    pub model: Option<String>,
    /// Default variable values.
    #[serde(default)]
    pub defaults: BTreeMap<String, String>,
    /// Acceptance checks every task of the template must pass.
    #[serde(default)]
    pub checks: Vec<String>,
}

impl NewTemplate {
    /// A template with this name and text.
    pub fn new(name: impl Into<String>, prompt_template: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            prompt_template: prompt_template.into(),
            ..Self::default()
        }
    }

    /// Adds an acceptance check every task of the template must pass.
    pub fn check(mut self, command: impl Into<String>) -> Self {
        self.checks.push(command.into());
        self
    }

    /// Checks the name, the syntax, that every placeholder is a task variable or has a
    /// default, and the acceptance checks.
    pub fn validate(&self) -> Result<(), TemplateError> {
        validate_fields(&self.name, &self.prompt_template, &self.defaults)?;
        validate_template_checks(&self.checks)
    }

    /// Builds the template after validation.
    pub fn into_template(self) -> Result<Template, TemplateError> {
        self.validate()?;
        let now = Utc::now();
        Ok(Template {
            id: TemplateId::new(),
            name: self.name,
            description: self.description,
            prompt_template: self.prompt_template,
            provider: self.provider,
            model: self.model,
            defaults: self.defaults,
            checks: self.checks,
            created_at: now,
            updated_at: now,
        })
    }
}

/// A partial change to a template; `None` fields stay.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct TemplateUpdate {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
    /// New text.
    #[serde(default)]
    pub prompt_template: Option<String>,
    /// New provider.
    #[serde(default)]
    pub provider: Option<String>,
    /// New model.
    #[serde(default)]
    pub model: Option<String>,
    /// New defaults (replace the old ones).
    #[serde(default)]
    pub defaults: Option<BTreeMap<String, String>>,
    /// New acceptance checks (replace the old ones).
    #[serde(default)]
    pub checks: Option<Vec<String>>,
}

impl TemplateUpdate {
    /// Applies the update after validating the result; on error `template` is unchanged.
    pub fn apply(&self, template: &mut Template) -> Result<(), TemplateError> {
        let mut next = template.clone();
        if let Some(v) = &self.name {
            next.name = v.clone();
        }
        if let Some(v) = &self.description {
            next.description = v.clone();
        }
        if let Some(v) = &self.prompt_template {
            next.prompt_template = v.clone();
        }
        if let Some(v) = &self.provider {
            next.provider = Some(v.clone());
        }
        if let Some(v) = &self.model {
            next.model = Some(v.clone());
        }
        if let Some(v) = &self.defaults {
            next.defaults = v.clone();
        }
        if let Some(v) = &self.checks {
            next.checks = v.clone();
        }
        validate_fields(&next.name, &next.prompt_template, &next.defaults)?;
        validate_template_checks(&next.checks)?;
        next.updated_at = Utc::now();
        *template = next;
        Ok(())
    }
}

fn validate_template_checks(checks: &[String]) -> Result<(), TemplateError> {
    crate::verify::validate_checks(checks).map_err(|e| TemplateError::InvalidChecks(e.message))
}

fn validate_fields(
    name: &str,
    text: &str,
    defaults: &BTreeMap<String, String>,
) -> Result<(), TemplateError> {
    if name.trim().is_empty() || name.len() > 256 {
        return Err(TemplateError::Invalid(
            "name must be 1–256 non-blank bytes".into(),
        ));
    }
    if text.trim().is_empty() {
        return Err(TemplateError::Invalid(
            "prompt_template must not be empty".into(),
        ));
    }
    let unknown: Vec<String> = placeholders(text)?
        .into_iter()
        .filter(|v| !TASK_VARIABLES.contains(&v.as_str()) && !defaults.contains_key(v))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(TemplateError::UnknownVariables(unknown))
    }
}

enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

fn parse(text: &str) -> Result<Vec<Piece<'_>>, TemplateError> {
    let mut pieces = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(open) = rest.find("{{") {
        pieces.push(Piece::Text(&rest[..open]));
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or_else(|| TemplateError::Syntax {
            position: offset + open,
            message: "'{{' without a closing '}}'".into(),
        })?;
        let name = after[..close].trim();
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(TemplateError::Syntax {
                position: offset + open,
                message: format!("placeholder {:?} is not a variable name", &after[..close]),
            });
        }
        pieces.push(Piece::Var(name));
        let consumed = open + 2 + close + 2;
        offset += consumed;
        rest = &rest[consumed..];
    }
    pieces.push(Piece::Text(rest));
    Ok(pieces)
}

/// The distinct placeholder names in `text`, sorted.
pub fn placeholders(text: &str) -> Result<BTreeSet<String>, TemplateError> {
    Ok(parse(text)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Var(v) => Some(v.to_string()),
            Piece::Text(_) => None,
        })
        .collect())
}

impl Template {
    /// Checks the template by the same rules as [`NewTemplate::validate`]; stores call it on
    /// templates they are handed.
    pub fn validate(&self) -> Result<(), TemplateError> {
        validate_fields(&self.name, &self.prompt_template, &self.defaults)
    }

    /// The distinct placeholders of the text.
    pub fn variables(&self) -> Result<BTreeSet<String>, TemplateError> {
        placeholders(&self.prompt_template)
    }

    /// Fills the placeholders from `vars`, then from the template's `defaults`. Every placeholder
    /// without a value is reported in one [`TemplateError::UnknownVariables`].
    pub fn render(&self, vars: &BTreeMap<String, String>) -> Result<String, TemplateError> {
        render(&self.prompt_template, vars, &self.defaults)
    }
}

/// Renders `text` with `vars`, falling back to `defaults`.
pub fn render(
    text: &str,
    vars: &BTreeMap<String, String>,
    defaults: &BTreeMap<String, String>,
) -> Result<String, TemplateError> {
    let pieces = parse(text)?;
    let mut out = String::with_capacity(text.len());
    let mut missing = BTreeSet::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Var(v) => match vars.get(v).or_else(|| defaults.get(v)) {
                Some(value) => out.push_str(value),
                None => {
                    missing.insert(v.to_string());
                }
            },
        }
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(TemplateError::UnknownVariables(
            missing.into_iter().collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn renders_vars_and_defaults() {
        let mut t = NewTemplate::new("t", "Do {{ title }} in {{lang}}.").into_template();
        assert!(matches!(t, Err(TemplateError::UnknownVariables(ref v)) if v == &["lang"]));
        let mut nt = NewTemplate::new("t", "Do {{ title }} in {{lang}}.");
        nt.defaults.insert("lang".into(), "Rust".into());
        t = nt.into_template();
        let t = t.unwrap();
        assert_eq!(t.render(&vars(&[("title", "X")])).unwrap(), "Do X in Rust.");
        assert_eq!(
            t.render(&vars(&[("title", "X"), ("lang", "Go")])).unwrap(),
            "Do X in Go."
        );
        assert_eq!(
            t.render(&vars(&[])),
            Err(TemplateError::UnknownVariables(vec!["title".into()]))
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        assert!(matches!(
            placeholders("a {{b"),
            Err(TemplateError::Syntax { position: 2, .. })
        ));
        assert!(matches!(
            placeholders("{{ 1x }}"),
            Err(TemplateError::Syntax { .. })
        ));
        assert!(matches!(
            placeholders("{{a-b}}"),
            Err(TemplateError::Syntax { .. })
        ));
        assert_eq!(placeholders("no vars } {").unwrap().len(), 0);
        let mut t = NewTemplate::new("t", "{{title}}").into_template().unwrap();
        let bad = TemplateUpdate {
            prompt_template: Some("{{oops".into()),
            ..Default::default()
        };
        assert!(bad.apply(&mut t).is_err());
        assert_eq!(
            t.prompt_template, "{{title}}",
            "a failed update changes nothing"
        );
    }
}
