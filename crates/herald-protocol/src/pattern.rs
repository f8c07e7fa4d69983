//! Type patterns that select events in filters: `tool.*`, `run.*`, `text.delta`,
//! comma-separated (`?types=` on the hub, `--types` on the CLI, `track` on a run).

use std::fmt;
use std::str::FromStr;

/// A set of event type patterns; an event matches when any pattern does.
///
/// A pattern is an exact type (`text.delta`), a family (`tool.*` matches `tool.started`
/// and every other `tool.` type, `custom.*` every custom event), or `*` for everything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeFilter {
    patterns: Vec<Pattern>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    Any,
    Exact(String),
    /// The family's prefix with its dot, e.g. `tool.`.
    Prefix(String),
}

/// Why a string is not a valid [`TypeFilter`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidTypeFilter {
    pattern: String,
}

impl fmt::Display for InvalidTypeFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid type pattern `{}`: expected an event type (`text.delta`), a family (`tool.*`) or `*`",
            self.pattern
        )
    }
}

impl std::error::Error for InvalidTypeFilter {}

impl TypeFilter {
    /// A filter that matches every event.
    pub fn all() -> TypeFilter {
        TypeFilter {
            patterns: vec![Pattern::Any],
        }
    }

    /// Whether an event of type `event_type` passes the filter.
    pub fn matches(&self, event_type: &str) -> bool {
        self.patterns.iter().any(|p| match p {
            Pattern::Any => true,
            Pattern::Exact(t) => t == event_type,
            Pattern::Prefix(prefix) => event_type.starts_with(prefix.as_str()),
        })
    }
}

impl FromStr for TypeFilter {
    type Err = InvalidTypeFilter;

    /// Parses comma-separated patterns; spaces around them are ignored.
    fn from_str(s: &str) -> Result<TypeFilter, InvalidTypeFilter> {
        let patterns = s
            .split(',')
            .map(str::trim)
            .map(|p| {
                parse_pattern(p).ok_or_else(|| InvalidTypeFilter {
                    pattern: p.to_owned(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TypeFilter { patterns })
    }
}

fn parse_pattern(p: &str) -> Option<Pattern> {
    if p == "*" {
        return Some(Pattern::Any);
    }
    let (stem, family) = match p.strip_suffix(".*") {
        Some(stem) => (stem, true),
        None => (p, false),
    };
    let segment_ok = |seg: &str| {
        !seg.is_empty()
            && seg
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    if !stem.split('.').all(segment_ok) {
        return None;
    }
    Some(if family {
        Pattern::Prefix(format!("{stem}."))
    } else {
        Pattern::Exact(stem.to_owned())
    })
}

impl fmt::Display for TypeFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.patterns.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match p {
                Pattern::Any => f.write_str("*")?,
                Pattern::Exact(t) => f.write_str(t)?,
                Pattern::Prefix(prefix) => write!(f, "{prefix}*")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(filter: &str, event_type: &str, expected: bool) {
        let f: TypeFilter = filter.parse().unwrap();
        assert_eq!(f.matches(event_type), expected, "{filter} ~ {event_type}");
    }

    #[test]
    fn matching() {
        check("tool.*", "tool.started", true);
        check("tool.*", "tool", false);
        check("tool.*", "tools.started", false);
        check("run.*,text.delta", "text.delta", true);
        check("run.*, text.delta", "run.finished", true);
        check("run.*,text.delta", "progress", false);
        check("custom.*", "custom.deploy", true);
        check("*", "anything.at_all", true);
        check("progress", "progress", true);
    }

    #[test]
    fn rejects_malformed_patterns() {
        for bad in [
            "",
            "tool.",
            "*.started",
            "Tool.*",
            "tool..x",
            "a,,b",
            "tool*",
            "a b",
        ] {
            assert!(bad.parse::<TypeFilter>().is_err(), "{bad:?}");
        }
        let f: TypeFilter = "tool.*,progress".parse().unwrap();
        assert_eq!(f.to_string(), "tool.*,progress");
    }
}
