//! JSON text to a [`serde_json::Value`], refusing an object that repeats a key.
//!
//! serde_json keeps the last of repeated keys, and `#[derive(Deserialize)]` refuses a
//! repeated field only at the top of its own struct, so one body could be refused by
//! one route and silently changed by another. Here every object, at any depth, is
//! checked as it is built: the check is the map insertion that building a `Value`
//! does anyway, so it costs no second pass over the text. Whoever reads JSON through
//! [`parse_json`] (events, the hub's request bodies) sees one rule: a repeated key is
//! an error naming its path.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

use serde::Deserializer;
use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

use crate::wire::{ErrorCode, EventError};

/// Parses JSON text into a `Value`, refusing an object that repeats a key.
///
/// A repeated key is an [`ErrorCode::DuplicateKey`] whose field is the key's path
/// (`meta.owner`, `messages[1].role`); text that is not JSON is an
/// [`ErrorCode::InvalidJson`].
pub fn parse_json(text: &str) -> Result<Value, EventError> {
    let repeated = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let res = UniqueKeys {
        repeated: &repeated,
    }
    .deserialize(&mut de)
    .and_then(|value| de.end().map(|()| value));
    res.map_err(|e| match repeated.into_inner() {
        Some(path) => duplicate_key(path),
        None => EventError::new(ErrorCode::InvalidJson, None, format!("not valid JSON: {e}")),
    })
}

/// A `Value` read through [`UniqueKeys`], for `Deserialize` impls that take any
/// deserializer (the error then names the key, not its whole path).
pub(crate) fn unique_value<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    let repeated = RefCell::new(None);
    UniqueKeys {
        repeated: &repeated,
    }
    .deserialize(d)
}

fn duplicate_key(path: String) -> EventError {
    EventError::new(
        ErrorCode::DuplicateKey,
        Some(&path),
        format!("`{path}` is given twice: each key of an object must be unique"),
    )
}

/// Builds a `Value` as serde_json's own visitor does, except that a repeated key is an
/// error. The path of the repeated key is put together in `repeated` as the error
/// passes up through the objects and arrays around it: serde's error type carries
/// only a message.
#[derive(Clone, Copy)]
struct UniqueKeys<'a> {
    repeated: &'a RefCell<Option<String>>,
}

impl UniqueKeys<'_> {
    fn within(self, outer: &str) {
        within(self.repeated, outer);
    }
}

/// Puts `outer` (a key, or `[index]`) in front of the path of a repeated key found
/// inside it, if that is what failed.
fn within(repeated: &RefCell<Option<String>>, outer: &str) {
    if let Some(path) = repeated.borrow_mut().as_mut() {
        let sep = if path.starts_with('[') { "" } else { "." };
        *path = format!("{outer}{sep}{path}");
    }
}

impl<'de> DeserializeSeed<'de> for UniqueKeys<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueKeys<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        loop {
            match seq.next_element_seed(self) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => return Ok(Value::Array(items)),
                Err(e) => {
                    self.within(&format!("[{}]", items.len()));
                    return Err(e);
                }
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = match map.next_value_seed(self) {
                Ok(value) => value,
                Err(e) => {
                    self.within(&key);
                    return Err(e);
                }
            };
            match object.entry(key) {
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
                Entry::Occupied(slot) => {
                    let key = slot.key().clone();
                    let message = format!("duplicate key `{key}`");
                    *self.repeated.borrow_mut() = Some(key);
                    return Err(A::Error::custom(message));
                }
            }
        }
        Ok(Value::Object(object))
    }
}

/// What [`scan_object`] found in an object's text without building it.
#[derive(Debug)]
pub(crate) struct Scanned {
    /// The values of the top-level keys asked for, in the order of the text.
    pub(crate) picked: Map<String, Value>,
    /// The first top-level key whose value nests the object deeper than the limit, with
    /// its levels (the object's own level counted).
    pub(crate) too_deep: Option<(String, usize)>,
}

/// Checks that `text` is one JSON value with no key repeated in any object, as
/// [`parse_json`] does and with its errors, without building it; `Ok(None)` if it is
/// valid JSON but not an object. For an object, the values of its own keys named in
/// `pick` are built (an event's envelope: a few small values), and the first of its
/// keys whose value nests it more than `max_levels` deep is reported.
pub(crate) fn scan_object(
    text: &str,
    pick: &[&str],
    max_levels: usize,
) -> Result<Option<Scanned>, EventError> {
    let repeated = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let res = Top {
        repeated: &repeated,
        pick,
        max_levels,
    }
    .deserialize(&mut de)
    .and_then(|value| de.end().map(|()| value));
    res.map_err(|e| match repeated.into_inner() {
        Some(path) => duplicate_key(path),
        None => EventError::new(ErrorCode::InvalidJson, None, format!("not valid JSON: {e}")),
    })
}

/// The depth of a built value: a scalar 0, an array or object one more than its
/// deepest member.
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(fields) => 1 + fields.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The keys of one object seen so far, to find a repeated one: a short list, searched
/// in order, that becomes a set past a few keys.
enum Seen<'de> {
    Few(Vec<Cow<'de, str>>),
    Many(HashSet<Cow<'de, str>>),
}

impl<'de> Seen<'de> {
    const FEW: usize = 16;

    /// Adds `key`, or gives it back if it was there already.
    fn insert(&mut self, key: Cow<'de, str>) -> Result<(), Cow<'de, str>> {
        match self {
            Seen::Few(keys) if keys.contains(&key) => Err(key),
            Seen::Few(keys) if keys.len() < Seen::FEW => {
                keys.push(key);
                Ok(())
            }
            Seen::Few(keys) => {
                let mut set: HashSet<_> = keys.drain(..).collect();
                set.insert(key);
                *self = Seen::Many(set);
                Ok(())
            }
            Seen::Many(set) if set.contains(&key) => Err(key),
            Seen::Many(set) => {
                set.insert(key);
                Ok(())
            }
        }
    }
}

/// The error for `key` given twice in one object; its path is kept in `repeated`.
fn repeated_key<E: serde::de::Error>(repeated: &RefCell<Option<String>>, key: &str) -> E {
    *repeated.borrow_mut() = Some(key.to_owned());
    E::custom(format!("duplicate key `{key}`"))
}

/// A key, borrowed from the text when it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(v))
    }
}

/// Walks any JSON value without building it, refusing a repeated key as
/// [`UniqueKeys`] does; gives its depth.
#[derive(Clone, Copy)]
struct Walk<'a> {
    repeated: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_i64<E>(self, _: i64) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_u64<E>(self, _: u64) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_f64<E>(self, _: f64) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_str<E>(self, _: &str) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_none<E>(self) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        self.deserialize(d)
    }

    fn visit_unit<E>(self) -> Result<usize, E> {
        Ok(0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut deepest = 0;
        let mut index = 0usize;
        loop {
            match seq.next_element_seed(self) {
                Ok(Some(depth)) => deepest = deepest.max(depth),
                Ok(None) => return Ok(1 + deepest),
                Err(e) => {
                    within(self.repeated, &format!("[{index}]"));
                    return Err(e);
                }
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
        let mut seen = Seen::Few(Vec::new());
        let mut deepest = 0;
        while let Some(key) = map.next_key_seed(Key)? {
            match map.next_value_seed(self) {
                Ok(depth) => deepest = deepest.max(depth),
                Err(e) => {
                    within(self.repeated, &key);
                    return Err(e);
                }
            }
            if let Err(key) = seen.insert(key) {
                return Err(repeated_key(self.repeated, &key));
            }
        }
        Ok(1 + deepest)
    }
}

/// The top of [`scan_object`]: an object's own keys, picking the ones asked for.
struct Top<'a> {
    repeated: &'a RefCell<Option<String>>,
    pick: &'a [&'a str],
    max_levels: usize,
}

impl<'de> DeserializeSeed<'de> for Top<'_> {
    type Value = Option<Scanned>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Scanned>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = Option<Scanned>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Option<Scanned>, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Option<Scanned>, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Option<Scanned>, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Option<Scanned>, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Option<Scanned>, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Option<Scanned>, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Option<Scanned>, A::Error> {
        Walk {
            repeated: self.repeated,
        }
        .visit_seq(seq)
        .map(|_| None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Scanned>, A::Error> {
        let walk = Walk {
            repeated: self.repeated,
        };
        let mut seen = Seen::Few(Vec::new());
        let mut scanned = Scanned {
            picked: Map::new(),
            too_deep: None,
        };
        while let Some(key) = map.next_key_seed(Key)? {
            let value = if self.pick.contains(&key.as_ref()) {
                map.next_value_seed(UniqueKeys {
                    repeated: self.repeated,
                })
                .map(|value| (depth(&value), Some(value)))
            } else {
                map.next_value_seed(walk).map(|depth| (depth, None))
            };
            let (depth, value) = match value {
                Ok(value) => value,
                Err(e) => {
                    within(self.repeated, &key);
                    return Err(e);
                }
            };
            let levels = 1 + depth;
            if levels > self.max_levels && scanned.too_deep.is_none() {
                scanned.too_deep = Some((key.to_string(), levels));
            }
            if let Some(value) = value {
                scanned.picked.insert(key.to_string(), value);
            }
            if let Err(key) = seen.insert(key) {
                return Err(repeated_key(self.repeated, &key));
            }
        }
        Ok(Some(scanned))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::parse_json;
    use crate::wire::ErrorCode;

    #[track_caller]
    fn check(text: &str, expected: Result<serde_json::Value, &str>) {
        let actual = parse_json(text).map_err(|e| {
            assert_eq!(e.code, ErrorCode::DuplicateKey, "{e}");
            e.field.unwrap_or_default()
        });
        assert_eq!(actual, expected.map_err(str::to_owned), "{text}");
    }

    #[test]
    fn a_repeated_key_is_named_by_its_path() {
        check(r#"{"a":1,"a":2}"#, Err("a"));
        check(r#"{"a":{"b":1,"c":2,"b":3}}"#, Err("a.b"));
        check(r#"{"m":[{"r":1},{"r":1,"r":2}]}"#, Err("m[1].r"));
        check(r#"[[{"x":0}],[{"y":1,"y":1}]]"#, Err("[1][0].y"));
        // The same key in sibling objects is no repetition.
        check(
            r#"{"a":{"k":1},"b":{"k":1},"c":[{"k":1},{"k":2}]}"#,
            Ok(json!({"a":{"k":1},"b":{"k":1},"c":[{"k":1},{"k":2}]})),
        );
    }

    #[test]
    fn values_are_those_serde_json_builds() {
        let text = r#"{"z":1,"a":[true,null,-3,18446744073709551615,1.5e300,"s\u00e9"],"e":{}}"#;
        let ours = parse_json(text).expect("valid JSON");
        let theirs: serde_json::Value = serde_json::from_str(text).expect("valid JSON");
        assert_eq!(ours, theirs);
        assert_eq!(
            ours.as_object()
                .map(|m| m.keys().cloned().collect::<Vec<_>>()),
            Some(vec!["z".to_owned(), "a".to_owned(), "e".to_owned()]),
            "the keys keep their order"
        );
    }

    #[test]
    fn the_scan_refuses_what_the_parse_refuses_with_the_same_error() {
        use super::scan_object;
        for text in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":{"b":1,"c":2,"b":3}}"#,
            r#"{"m":[{"r":1},{"r":1,"r":2}]}"#,
            r#"[[{"x":0}],[{"y":1,"y":1}]]"#,
            r#"{"event":{"k":1,"k":2}}"#,
            r#"{"ab":1,"ab":2}"#,
            "",
            "{",
            r#"{"a":1}}"#,
            r#"{"a":1} x"#,
            "[1,]",
        ] {
            let scanned = scan_object(text, &["event"], usize::MAX).map(|_| ());
            let parsed = parse_json(text).map(|_| ());
            match (scanned, parsed) {
                (Err(s), Err(p)) => {
                    assert_eq!((s.code, &s.field), (p.code, &p.field), "{text}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_scan_picks_top_level_values_and_finds_the_first_key_too_deep() {
        use super::scan_object;
        let text = r#"{"a":[[1]],"event":"log","b":{"c":{"d":[]}},"e":{"x":{"y":{}}}}"#;
        let scanned = scan_object(text, &["event", "nope"], 3)
            .expect("valid JSON")
            .expect("an object");
        assert_eq!(
            scanned.picked,
            json!({"event": "log"}).as_object().cloned().unwrap()
        );
        // `a` nests the object 3 levels deep; `b` 4, the first over 3.
        assert_eq!(scanned.too_deep, Some(("b".to_owned(), 4)));
        for not_object in ["[1]", "1", "\"s\"", "null"] {
            assert!(scan_object(not_object, &[], 64).expect("valid").is_none());
        }
        // A key with escapes is a key like any other, and repeated as one.
        let e = scan_object(r#"{"\u0061":1,"a":2}"#, &[], 64).expect_err("repeated");
        assert_eq!(e.field.as_deref(), Some("a"));
        // Past a few keys the seen keys are a set: still found repeated.
        let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        let text = format!("{{{},\"k7\":0}}", many.join(","));
        let e = scan_object(&text, &[], 64).expect_err("repeated");
        assert_eq!(e.field.as_deref(), Some("k7"));
    }

    #[test]
    fn text_that_is_not_json_is_invalid_json() {
        for text in ["", "{", r#"{"a":1}}"#, r#"{"a":1} x"#, "[1,]"] {
            let e = parse_json(text).expect_err(text);
            assert_eq!(e.code, ErrorCode::InvalidJson, "{text}: {e}");
            assert_eq!(e.field, None);
        }
    }
}
