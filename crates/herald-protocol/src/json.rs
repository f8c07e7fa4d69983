//! JSON text to a [`serde_json::Value`], refusing an object that repeats a key.
//!
//! serde_json keeps the last of repeated keys, and `#[derive(Deserialize)]` refuses a
//! repeated field only at the top of its own struct, so one body could be refused by
//! one route and silently changed by another. Here every object, at any depth, is
//! checked as it is built: the check is the map insertion that building a `Value`
//! does anyway, so it costs no second pass over the text. Whoever reads JSON through
//! [`parse_json`] (events, the hub's request bodies) sees one rule: a repeated key is
//! an error naming its path.

use std::cell::RefCell;
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
    /// Puts `outer` (a key, or `[index]`) in front of the path of a repeated key found
    /// inside it, if that is what failed.
    fn within(self, outer: &str) {
        if let Some(path) = self.repeated.borrow_mut().as_mut() {
            let sep = if path.starts_with('[') { "" } else { "." };
            *path = format!("{outer}{sep}{path}");
        }
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
    fn text_that_is_not_json_is_invalid_json() {
        for text in ["", "{", r#"{"a":1}}"#, r#"{"a":1} x"#, "[1,]"] {
            let e = parse_json(text).expect_err(text);
            assert_eq!(e.code, ErrorCode::InvalidJson, "{text}: {e}");
            assert_eq!(e.field, None);
        }
    }
}
