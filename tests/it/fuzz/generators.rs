//! Generators of the fuzzers' inputs: JSON values, edge values, near-valid frames, token soup.

use proptest::{
    collection::{btree_map, vec},
    prelude::*,
};
use serde_json::{Map, Value, json};

use super::CLIENT_TYPES;

// ---------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------

/// Any JSON value, a few levels deep.
pub(super) fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,16}".prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map("\\PC{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Values that sit near the edges of the frame rules.
pub(super) fn edge_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!("")),
        Just(json!("   ")),
        Just(json!("\u{3000}\u{a0}\n")),
        Just(json!("a\u{0}b")),
        Just(json!("caf\u{e9}")),
        Just(json!("x".repeat(128))),
        Just(json!("x".repeat(129))),
        Just(json!("😀".repeat(16_384))),
        Just(json!(format!(" {} ", "😀".repeat(16_384)))),
        Just(json!("😀".repeat(16_385))),
        Just(json!("'; DROP TABLE messages; --")),
        Just(json!("<script>alert(1)</script>")),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(1)),
        Just(json!(10)),
        Just(json!(11)),
        Just(json!(1.5)),
        Just(json!(i64::MAX)),
        Just(json!(u64::MAX)),
        Just(json!(1e20)),
        Just(json!(["anima", "neo"])),
        Just(json!(["anima"])),
        Just(json!(["a", "b", "c", "d", "e", "f", "g", "h", "i"])),
        Just(json!(["anima", 1])),
        Just(Value::Null),
        "[ -~]{0,40}".prop_map(Value::from),
        json_value(),
    ]
}

/// A frame object that is valid, or a small step away from valid.
pub(super) fn near_valid_frame() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        4 => proptest::sample::select(CLIENT_TYPES).prop_map(Value::from),
        1 => proptest::sample::select(vec!["SEND", "", " ping", "sned", "__proto__"]).prop_map(Value::from),
        1 => json_value(),
    ];
    let field = proptest::sample::select(vec![
        "thread",
        "after_seq",
        "client_id",
        "body",
        "agent",
        "topic",
        "agents",
        "rounds",
        "stream_id",
        "message_id",
        "nonce",
        "type",
    ]);
    (
        prop::option::weighted(0.95, kind),
        btree_map(field, edge_value(), 0..8),
    )
        .prop_map(|(kind, fields)| {
            let mut obj: Map<String, Value> = fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
            if let Some(k) = kind {
                obj.insert("type".into(), k);
            }
            Value::Object(obj)
        })
}

/// Text built from JSON-ish tokens, so brackets, quotes and escapes collide in odd ways.
pub(super) fn jsonish_text() -> impl Strategy<Value = String> {
    let token = proptest::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        "\"",
        "\\",
        "\\\"",
        ":",
        ",",
        " ",
        "\"type\"",
        "\"send\"",
        "\"ping\"",
        "\"thread\"",
        "\"body\"",
        "\"client_id\"",
        "\"after_seq\"",
        "\"nonce\"",
        "1",
        "-1",
        "1e400",
        "99999999999999999999",
        "-0",
        "1.0",
        "null",
        "true",
        "\\u0000",
        "\\ud800",
        "\u{0}",
        "é",
        "😀",
        "\n",
    ]);
    vec(token, 0..80).prop_map(|t| t.concat())
}

/// Nesting of `depth` arrays/objects around a scalar.
pub(super) fn nested(depth: usize, objects: bool) -> String {
    if objects {
        format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
    } else {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }
}

pub(super) fn depth_of(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth_of).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth_of).max().unwrap_or(0),
        _ => 0,
    }
}
