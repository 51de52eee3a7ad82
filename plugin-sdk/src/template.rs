use std::borrow::Cow;

use crate::{Event, LazyEvent};

/// What a [`Template`] renders from: the facts of an event by name.
///
/// Implemented by [`Event`] and [`LazyEvent`]; a plugin that has read some
/// facts already may implement it to render from those.
pub trait Fields {
    /// The value of field `name` (one of [`Event::FIELD_NAMES`]), as
    /// [`Event::field`] gives it; `None` for unknown names.
    fn field(&self, name: &str) -> Option<Cow<'_, str>>;
}

impl Fields for Event {
    fn field(&self, name: &str) -> Option<Cow<'_, str>> {
        Event::field(self, name)
    }
}

impl Fields for LazyEvent<'_> {
    fn field(&self, name: &str) -> Option<Cow<'_, str>> {
        LazyEvent::field(self, name)
    }
}

/// A string with `{placeholder}` fields filled from an event ([`Fields`]), parsed once
/// (typically in [`Plugin::init`](crate::Plugin::init)) so that typos are
/// reported when the plugin loads.
///
/// Placeholders are the names in [`Event::FIELD_NAMES`], e.g.
/// `https://kubeflow.example.com/pipeline/#/runs/details/{run_id}` or
/// `kfp-{reason_kebab}`. Write `{{` and `}}` for literal braces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(String),
}

impl Template {
    /// Parses a template, rejecting unknown placeholders and unbalanced braces.
    pub fn parse(template: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = template.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => {
                                return Err(format!("template {template:?}: unclosed `{{`"));
                            }
                        }
                    }
                    let name = name.trim().to_owned();
                    if !Event::FIELD_NAMES.contains(&name.as_str()) {
                        return Err(format!(
                            "template {template:?}: unknown placeholder {{{name}}}; known: {}",
                            Event::FIELD_NAMES.join(", ")
                        ));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Field(name));
                }
                '}' => return Err(format!("template {template:?}: unmatched `}}`")),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Self { parts })
    }

    /// Fills the placeholders; empty fields render as empty strings.
    pub fn render<F: Fields + ?Sized>(&self, event: &F) -> String {
        self.render_with(event, false).unwrap_or_default()
    }

    /// Fills the placeholders, or returns `None` if any of them is empty for
    /// this event (e.g. a run URL for an event without a run id).
    pub fn render_complete<F: Fields + ?Sized>(&self, event: &F) -> Option<String> {
        self.render_with(event, true)
    }

    fn render_with<F: Fields + ?Sized>(&self, event: &F, require_all: bool) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Field(name) => {
                    let value = event.field(name).unwrap_or_default();
                    if require_all && value.is_empty() {
                        return None;
                    }
                    out.push_str(&value);
                }
            }
        }
        Some(out)
    }
}

impl std::str::FromStr for Template {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> serde::Deserialize<'de> for Template {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_fields_and_escapes() {
        let e = Event {
            reason: "WorkflowFailed".into(),
            run_id: "r-1".into(),
            ..Event::default()
        };
        let t = Template::parse("{{x}} kfp-{reason_kebab}/{run_id}").unwrap();
        assert_eq!(t.render(&e), "{x} kfp-workflow-failed/r-1");
        let t = Template::parse("u/{run_id}/{node_name}").unwrap();
        assert_eq!(t.render(&e), "u/r-1/");
        assert_eq!(t.render_complete(&e), None);
        assert_eq!(t.render(&LazyEvent::from(&e)), "u/r-1/");
    }

    #[test]
    fn rejects_bad_templates() {
        assert!(
            Template::parse("{runid}")
                .unwrap_err()
                .contains("unknown placeholder {runid}")
        );
        assert!(Template::parse("{run_id").is_err());
        assert!(Template::parse("a}").is_err());
    }
}
