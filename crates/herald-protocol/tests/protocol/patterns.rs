//! Type patterns (`?types=` on the hub, `--types`, a run's `track`): any text parses as
//! a filter exactly when each of its comma-separated patterns is one of the grammar's,
//! a filter reads back from how it is written, and it matches exactly the event types
//! its patterns name.

use herald_protocol::{EVENT_TYPES, TypeFilter};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use crate::props::config;

/// A lowercase word of the grammar: `[a-z0-9_]+`.
fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The grammar, written again from its description rather than from the parser: `*`,
/// or dot-separated words, the last of which may be `*` (a family); spaces around a
/// pattern do not count.
fn is_pattern(p: &str) -> bool {
    let p = p.trim();
    if p == "*" {
        return true;
    }
    let segments: Vec<&str> = p.split('.').collect();
    let Some((last, stem)) = segments.split_last() else {
        return false;
    };
    stem.iter().all(|s| is_word(s)) && (is_word(last) || (*last == "*" && !stem.is_empty()))
}

/// Whether the event type `t` is one the patterns of `filter` name.
fn names(filter: &str, t: &str) -> bool {
    filter.split(',').map(str::trim).any(|p| {
        p == "*"
            || match p.strip_suffix(".*") {
                Some(stem) => t
                    .strip_prefix(stem)
                    .is_some_and(|rest| rest.starts_with('.')),
                None => p == t,
            }
    })
}

/// One valid pattern.
fn pattern() -> impl Strategy<Value = String> {
    let words = vec("[a-z0-9_]{1,6}", 1..4).prop_map(|w| w.join("."));
    prop_oneof![
        1 => Just("*".to_owned()),
        3 => select(EVENT_TYPES).prop_map(str::to_owned),
        2 => select(&["run", "stage", "item", "tool", "llm", "agent", "text", "custom"][..])
            .prop_map(|f| format!("{f}.*")),
        2 => words.clone(),
        2 => words.prop_map(|w| format!("{w}.*")),
    ]
}

/// A valid filter, its patterns with or without spaces around them.
fn filter() -> impl Strategy<Value = String> {
    vec(
        (pattern(), select(&["", " ", "\t", "  ", "\u{a0}"][..])),
        1..4,
    )
    .prop_map(|ps| {
        ps.iter()
            .map(|(p, pad)| format!("{pad}{p}{pad}"))
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// Any text, text of the grammar's characters, or a valid filter.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => "(?s).{0,24}",
        3 => "[a-z_.*, A-Z0-9\\-]{0,20}",
        3 => filter(),
        // A valid filter with one change.
        2 => (filter(), "[.,* A-Zé\\n]", any::<prop::sample::Index>()).prop_map(|(f, c, at)| {
            let mut f = f;
            let mut i = at.index(f.len() + 1);
            while !f.is_char_boundary(i) {
                i -= 1;
            }
            f.insert_str(i, &c);
            f
        }),
    ]
}

/// An event type, or something like one.
fn event_type() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(EVENT_TYPES).prop_map(str::to_owned),
        1 => "custom\\.[a-z0-9_]{1,6}",
        1 => "[a-z_.]{0,12}",
    ]
}

proptest! {
    #![proptest_config(config(256))]

    /// Text parses exactly when it is patterns of the grammar; a refusal names the
    /// pattern at fault.
    #[test]
    fn any_text_parses_exactly_when_it_is_patterns(text in text()) {
        let valid = text.split(',').all(is_pattern);
        match text.parse::<TypeFilter>() {
            Ok(_) => prop_assert!(valid, "{:?} parsed", text),
            Err(e) => {
                prop_assert!(!valid, "{:?} refused: {}", text, e);
                let bad = text.split(',').map(str::trim).find(|p| !is_pattern(p)).unwrap_or_default();
                let shown = e.to_string();
                prop_assert!(shown.contains(&format!("`{bad}`")), "{}", shown);
            }
        }
    }

    /// A filter matches exactly the types its patterns name.
    #[test]
    fn filters_match_what_they_name(filter in filter(), types in vec(event_type(), 1..8)) {
        let parsed: TypeFilter = filter.parse().expect("a valid filter");
        for t in &types {
            prop_assert_eq!(parsed.matches(t), names(&filter, t), "{:?} ~ {:?}", filter, t);
        }
    }

    /// A filter reads back from how it is written, and so matches the same.
    #[test]
    fn filters_read_back(filter in filter(), types in vec(event_type(), 1..8)) {
        let parsed: TypeFilter = filter.parse().expect("a valid filter");
        let written = parsed.to_string();
        let back: TypeFilter = written.parse().expect("a written filter parses");
        prop_assert_eq!(&back, &parsed);
        for t in &types {
            prop_assert_eq!(back.matches(t), parsed.matches(t));
        }
    }
}
