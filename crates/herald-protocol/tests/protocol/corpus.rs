//! The seed inputs of `tests/corpus/`, run on every test run: each goes through every
//! parser with the checks of `fuzz`, and its outcome is compared with the one
//! `tests/corpus/outcomes.txt` gives it: `ok N` for a batch of `N` events, or
//! `INDEX CODE FIELD` (`-` for none) for the error. A `.json` file is a JSON array body,
//! a `.ndjson` file an NDJSON body; each of their lines is also parsed as one event.
//!
//! The seeds are real events (`demo.ndjson`, from `herald demo --items 6 --fail-at 4
//! --progress json`, its run renamed `run-1`), every event type with every field, the
//! edges of numbers, text and framing, and the inputs of bugs the fuzzing found. They
//! are also what `fuzz` mutates. A parser bug found gets its input here, with its
//! outcome, beside proptest's own `*.proptest-regressions`.

use std::collections::BTreeMap;
use std::fs;

use herald_protocol::{BatchError, BatchFormat, Draft};

use crate::fuzz::{check_batch, check_event_text, corpus, corpus_dir};

/// `outcomes.txt`: file name to outcome, in file order.
fn outcomes() -> BTreeMap<String, String> {
    let path = corpus_dir().join("outcomes.txt");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (name, outcome) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("`{line}` is not `FILE OUTCOME`"));
            (name.to_owned(), outcome.trim().to_owned())
        })
        .collect()
}

/// A batch's outcome as `outcomes.txt` writes it.
fn outcome(res: &Result<Vec<Draft>, BatchError>) -> String {
    match res {
        Ok(drafts) => format!("ok {}", drafts.len()),
        Err(e) => format!(
            "{} {} {}",
            e.index.map_or("-".to_owned(), |i| i.to_string()),
            e.error.code.as_str(),
            e.error.field.as_deref().unwrap_or("-"),
        ),
    }
}

#[test]
fn every_seed_has_its_outcome() {
    let expected = outcomes();
    let mut actual = BTreeMap::new();
    for (name, bytes) in corpus() {
        // The hub refuses a body that is not UTF-8 before it parses (its own tests
        // send such bodies): the parsers take text.
        let text =
            std::str::from_utf8(&bytes).unwrap_or_else(|e| panic!("{name} is not UTF-8: {e}"));
        let format = match name.rsplit_once('.').map(|(_, ext)| ext) {
            Some("json") => BatchFormat::JsonArray,
            Some("ndjson") => BatchFormat::Ndjson,
            _ => panic!("{name}: a corpus file is .json or .ndjson"),
        };
        let res = check_batch(text, format);
        for line in text.lines() {
            let _ = check_event_text(line);
        }
        actual.insert(name, outcome(&res));
    }
    let listed = |outcomes: &BTreeMap<String, String>| {
        outcomes
            .iter()
            .map(|(name, outcome)| format!("{name} {outcome}\n"))
            .collect::<String>()
    };
    assert_eq!(
        listed(&actual),
        listed(&expected),
        "the corpus's outcomes (left) differ from outcomes.txt (right)"
    );
}
