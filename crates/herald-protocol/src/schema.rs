//! The JSON Schema of protocol v1 events, generated from the types in `event.rs`.
//!
//! The generated schema is checked in at `schema/event-v1.schema.json`; a test
//! regenerates it and fails when the two differ, so the published schema cannot drift
//! from the code that parses events.

use serde_json::{Map, Value, json};

use crate::event::{Custom, EventBody};
use crate::ids::MAX_RUN_ID_LEN;
use crate::wire::MAX_EVENT_ID_LEN;

/// The JSON Schema (draft 2020-12) of one stored event, as written on a JSON Lines
/// stream or returned by the hub. Events posted to a hub are the same without `v`,
/// `run` and `seq`, and with `ts` optional.
pub fn event_schema() -> Value {
    let mut defs = Map::new();
    let mut variants = Vec::new();
    for (event_type, schema) in EventBody::builtin_schemas() {
        let mut body = schema.to_value();
        let body = body
            .as_object_mut()
            .expect("a struct's schema is an object");
        if let Some(Value::Object(more)) = body.remove("$defs") {
            defs.extend(more);
        }
        let mut properties = envelope_properties();
        properties.insert("event".into(), json!({ "const": event_type }));
        if let Some(Value::Object(own)) = body.remove("properties") {
            properties.extend(own);
        }
        let mut required = envelope_required();
        if let Some(Value::Array(own)) = body.remove("required") {
            required.extend(own);
        }
        variants.push(json!({
            "title": event_type,
            "description": body.remove("description").unwrap_or(Value::Null),
            "type": "object",
            "required": required,
            "properties": properties,
        }));
    }

    let mut custom = envelope_properties();
    custom.insert(
        "event".into(),
        json!({ "type": "string", "pattern": format!("^{}[a-z0-9_]+$", Custom::PREFIX.replace('.', "\\.")) }),
    );
    variants.push(json!({
        "title": "custom.<name>",
        "description": "An event of the producer's own, with any fields beside the envelope.",
        "type": "object",
        "required": envelope_required(),
        "properties": custom,
    }));

    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "herald event, protocol v1",
        "description": "One herald event: the envelope (v, event, run, seq, ts, id, parent) and the fields of its type, in one flat object.",
        "oneOf": variants,
        "$defs": defs,
    })
}

fn envelope_properties() -> Map<String, Value> {
    let run_id = json!({
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_RUN_ID_LEN,
        "pattern": "^[A-Za-z0-9._:-]+$",
    });
    let mut props = Map::new();
    props.insert("v".into(), json!({ "const": 1 }));
    props.insert("run".into(), run_id.clone());
    props.insert("seq".into(), json!({ "type": "integer", "minimum": 1 }));
    props.insert(
        "ts".into(),
        json!({ "type": "string", "format": "date-time", "description": "RFC 3339 UTC with microseconds" }),
    );
    props.insert(
        "id".into(),
        json!({
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_EVENT_ID_LEN,
            "pattern": r"^[^\u0000-\u001F\u007F-\u009F]+$",
            "description": "1 to 128 bytes, without control characters",
        }),
    );
    props.insert("parent".into(), run_id);
    props
}

fn envelope_required() -> Vec<Value> {
    ["v", "event", "run", "seq", "ts"].map(Value::from).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHECKED_IN: &str = include_str!("../schema/event-v1.schema.json");

    #[test]
    fn checked_in_schema_matches_the_types() {
        let generated = serde_json::to_string_pretty(&event_schema()).unwrap() + "\n";
        if std::env::var_os("HERALD_UPDATE_SCHEMA").is_some() {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema/event-v1.schema.json");
            std::fs::write(path, &generated).unwrap();
            return;
        }
        assert!(
            generated == CHECKED_IN,
            "schema/event-v1.schema.json is out of date with the event types; \
             regenerate it with `HERALD_UPDATE_SCHEMA=1 cargo test -p herald-protocol schema` \
             and review the diff"
        );
    }

    /// The pattern is a regular expression: the dot of `custom.` escaped once, so it
    /// matches a dot, not a backslash and any character.
    #[test]
    fn custom_events_are_matched_by_their_prefix() {
        let schema = event_schema();
        let custom = schema["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["title"] == "custom.<name>")
            .unwrap();
        assert_eq!(
            custom["properties"]["event"]["pattern"],
            r"^custom\.[a-z0-9_]+$"
        );
    }

    #[test]
    fn every_event_type_has_a_variant() {
        let schema = event_schema();
        let titles: Vec<&str> = schema["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["title"].as_str().unwrap())
            .collect();
        for t in crate::EVENT_TYPES {
            assert!(titles.contains(t), "{t} missing from the schema");
        }
    }
}
