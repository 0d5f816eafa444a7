//! Runtime objects stored as hashes (SPEC §7), so nodes of different releases can share them:
//!
//! - a reader fills defaults for missing fields (`#[serde(default)]`) and ignores unknown
//!   ones (serde's default);
//! - a writer writes only the fields it changed ([`save_changes`]) or only the fields it
//!   knows ([`save`]), never the whole hash, so an older node never erases a newer node's
//!   fields;
//! - scalars are stored as their plain text (`"42"`, `"true"`, `"online"`), nested values
//!   as JSON, exactly what `HSET` from any other client would see.

use std::collections::BTreeMap;

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde::Serialize;
use serde_json::Value;

use crate::error::{BackendError, BackendResult};
use crate::state::StateStore;

/// A struct's fields as hash fields; `None` marks a field whose value is absent (`null`).
pub fn to_fields<T: Serialize>(obj: &T) -> BackendResult<BTreeMap<String, Option<String>>> {
    Ok(to_map(obj)?.into_iter().map(|(k, v)| (k, encode(v))).collect())
}

fn to_map<T: Serialize>(obj: &T) -> BackendResult<serde_json::Map<String, Value>> {
    match serde_json::to_value(obj).map_err(|e| BackendError::other("object", e))? {
        Value::Object(map) => Ok(map),
        _ => Err(BackendError::other("object", "a stored object must serialise as a map")),
    }
}

/// Reads a struct from hash fields: missing fields take their defaults, unknown ones are
/// ignored.
pub fn from_fields<T: DeserializeOwned>(fields: &[(String, String)]) -> BackendResult<T> {
    from_pairs(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

fn from_pairs<'a, T: DeserializeOwned>(fields: impl Iterator<Item = (&'a str, &'a str)>) -> BackendResult<T> {
    let iter = fields.map(|(k, v)| (k, FieldValue(v)));
    T::deserialize(de::value::MapDeserializer::<_, de::value::Error>::new(iter))
        .map_err(|e| BackendError::other("object", format!("cannot read stored object: {e}")))
}

/// Loads the object at `key`, or `None` when the hash is empty.
pub async fn load<T: DeserializeOwned>(state: &dyn StateStore, key: &str) -> BackendResult<Option<T>> {
    let fields = state.hgetall(key).await?;
    if fields.is_empty() {
        return Ok(None);
    }
    from_fields(&fields).map(Some)
}

/// Loads only `fields` of the object at `key` (one `HMGET`) into `T`, a narrower view of
/// the stored object whose other fields a hot path does not need; `None` when none of
/// `fields` is set (no such object).
pub async fn load_fields<T: DeserializeOwned>(
    state: &dyn StateStore,
    key: &str,
    fields: &[&str],
) -> BackendResult<Option<T>> {
    let values = state.hmget(key, fields).await?;
    if values.iter().all(Option::is_none) {
        return Ok(None);
    }
    let present = fields.iter().zip(&values).filter_map(|(k, v)| v.as_deref().map(|v| (*k, v)));
    from_pairs(present).map(Some)
}

/// Writes every field this definition of `T` knows (absent ones are deleted); fields it does
/// not know are left alone.
pub async fn save<T: Serialize>(state: &dyn StateStore, key: &str, obj: &T) -> BackendResult<()> {
    write(state, key, to_fields(obj)?).await
}

/// Writes only the fields that differ between `before` and `after`.
pub async fn save_changes<T: Serialize>(state: &dyn StateStore, key: &str, before: &T, after: &T) -> BackendResult<()> {
    // Compared as JSON values, and only the changed ones encoded: nested fields (lists,
    // maps) were serialised to text twice per save just to find them equal.
    let old = to_map(before)?;
    let changed =
        to_map(after)?.into_iter().filter(|(k, v)| old.get(k) != Some(v)).map(|(k, v)| (k, encode(v))).collect();
    write(state, key, changed).await
}

async fn write(state: &dyn StateStore, key: &str, fields: BTreeMap<String, Option<String>>) -> BackendResult<()> {
    let set: Vec<(&str, &str)> = fields.iter().filter_map(|(k, v)| v.as_deref().map(|v| (k.as_str(), v))).collect();
    let del: Vec<&str> = fields.iter().filter(|(_, v)| v.is_none()).map(|(k, _)| k.as_str()).collect();
    if !set.is_empty() {
        state.hset(key, &set).await?;
    }
    if !del.is_empty() {
        state.hdel(key, &del).await?;
    }
    Ok(())
}

fn encode(v: Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

/// One stored field, deserialised by what the reader asks for: strings as the raw text,
/// everything else as JSON (so `"42"` reads as a number or as the string "42").
struct FieldValue<'a>(&'a str);

/// A field whose text is a JSON integer or boolean, read without building a JSON value
/// (most fields of runtime objects are counters, ids, timestamps and flags).
enum Plain {
    U64(u64),
    I64(i64),
    Bool(bool),
}

impl<'a> FieldValue<'a> {
    fn json(&self) -> Result<Value, de::value::Error> {
        serde_json::from_str(self.0).map_err(|e| de::Error::custom(format!("{e} in {:?}", self.0)))
    }

    /// The field as JSON would read it, when it is a plain integer or boolean; `None` for
    /// anything else (which then goes through the JSON parser).
    fn plain(&self) -> Option<Plain> {
        let text = self.0;
        let integer = |digits: &str| {
            let b = digits.as_bytes();
            // JSON's integers: no leading zero (but "0" itself), digits only.
            !b.is_empty() && b.iter().all(u8::is_ascii_digit) && (b[0] != b'0' || b.len() == 1)
        };
        match text {
            "true" => Some(Plain::Bool(true)),
            "false" => Some(Plain::Bool(false)),
            _ => match text.strip_prefix('-') {
                Some(rest) if integer(rest) && rest != "0" => text.parse().ok().map(Plain::I64),
                Some(_) => None,
                None if integer(text) => text.parse().ok().map(Plain::U64),
                None => None,
            },
        }
    }

    fn visit_plain<'de, V: Visitor<'de>>(p: Plain, visitor: V) -> Result<V::Value, de::value::Error> {
        match p {
            Plain::U64(n) => visitor.visit_u64(n),
            Plain::I64(n) => visitor.visit_i64(n),
            Plain::Bool(b) => visitor.visit_bool(b),
        }
    }
}

impl<'de> IntoDeserializer<'de, de::value::Error> for FieldValue<'de> {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

macro_rules! via_json {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            if let Some(p) = self.plain() {
                return Self::visit_plain(p, visitor);
            }
            self.json()?.$method(visitor).map_err(de::Error::custom)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for FieldValue<'de> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if let Some(p) = self.plain() {
            return Self::visit_plain(p, visitor);
        }
        match serde_json::from_str::<Value>(self.0) {
            Ok(v) => v.deserialize_any(visitor).map_err(de::Error::custom),
            Err(_) => visitor.visit_borrowed_str(self.0),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_borrowed_str(self.0)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_borrowed_str(self.0)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_borrowed_str(self.0)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_borrowed_str(self.0)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        // Unit variants are stored as their bare name; others as JSON.
        match serde_json::from_str::<Value>(self.0) {
            Ok(v @ Value::Object(_)) => v.deserialize_enum("", &[], visitor).map_err(de::Error::custom),
            _ => visitor.visit_enum(self.0.into_deserializer()),
        }
    }

    via_json! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_bytes deserialize_byte_buf
        deserialize_unit deserialize_seq deserialize_map deserialize_ignored_any
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_map(visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::Id;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Status {
        Online,
        Away,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Nested {
        a: u32,
        tags: Vec<String>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Obj {
        id: Id,
        name: String,
        count: i64,
        ok: bool,
        status: Status,
        nested: Nested,
        note: Option<String>,
    }

    #[test]
    fn scalars_are_plain_text_and_nested_values_json() {
        let obj = Obj {
            id: Id(123),
            name: "42".into(),
            count: -7,
            ok: true,
            status: Status::Away,
            nested: Nested { a: 1, tags: vec!["x".into()] },
            note: None,
        };
        let fields = to_fields(&obj).expect("fields");
        assert_eq!(fields["id"].as_deref(), Some("123"));
        assert_eq!(fields["name"].as_deref(), Some("42"));
        assert_eq!(fields["count"].as_deref(), Some("-7"));
        assert_eq!(fields["ok"].as_deref(), Some("true"));
        assert_eq!(fields["status"].as_deref(), Some("away"));
        assert_eq!(fields["nested"].as_deref(), Some(r#"{"a":1,"tags":["x"]}"#));
        assert_eq!(fields["note"], None);
        let stored: Vec<(String, String)> = fields.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect();
        let back: Obj = from_fields(&stored).expect("read back");
        assert_eq!(back, obj);
    }

    /// The shortcut for integers and booleans reads every text exactly as the JSON parser
    /// would (numbers at the edges of their types, leading zeros, signs, near-misses).
    #[test]
    fn plain_fields_read_as_json_reads_them() {
        let texts = [
            "0",
            "7",
            "-7",
            "-0",
            "00",
            "01",
            "-01",
            "+1",
            "1.0",
            "1e3",
            "true",
            "false",
            "True",
            "null",
            "",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "9223372036854775807",
            "9223372036854775808",
            " 1",
            "1 ",
            "abc",
            "\"1\"",
            "[1]",
            "{}",
        ];
        for text in texts {
            let field = || [("f".to_string(), text.to_string())];
            let json = serde_json::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.into()));
            #[derive(Deserialize)]
            struct Any {
                f: Value,
            }
            assert_eq!(from_fields::<Any>(&field()).expect("any").f, json, "any: {text:?}");
            macro_rules! typed {
                ($($t:ty),*) => {$({
                    #[derive(Deserialize)]
                    struct T {
                        f: $t,
                    }
                    let fast = from_fields::<T>(&field()).ok().map(|t| t.f);
                    let slow = serde_json::from_str::<Value>(text).ok().and_then(|v| <$t>::deserialize(v).ok());
                    assert_eq!(fast, slow, "{}: {text:?}", stringify!($t));
                })*};
            }
            typed!(i64, u64, i32, u32, u16, bool, f64);
        }
    }

    #[test]
    fn a_bad_stored_value_is_an_error_not_a_panic() {
        #[derive(Debug, Deserialize)]
        struct N {
            #[allow(dead_code)]
            n: i64,
        }
        let r = from_fields::<N>(&[("n".into(), "not a number".into())]);
        assert!(r.is_err());
    }
}
