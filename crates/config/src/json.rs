//! Reading and writing service.json sections by hand rather than with serde derive,
//! because upstream's loading rules are per key: a missing boolean is `false`, a missing or
//! empty duration keeps its default, multiaddress lists accept a bare string, and unknown
//! keys only earn a warning. `Obj` applies those rules and remembers which keys it consumed.

use std::collections::BTreeMap;

use libp2p::Multiaddr;
use serde_json::{Map, Value};

use crate::{addr, ConfigError, GoDuration};

pub(crate) type Result<T> = std::result::Result<T, ConfigError>;

/// A JSON object being read, with the dotted path used in messages (`cluster.pubsub`).
pub(crate) struct Obj<'a> {
    pub path: String,
    map: &'a Map<String, Value>,
    used: Vec<&'static str>,
}

impl<'a> Obj<'a> {
    pub fn new(path: &str, v: &'a Value) -> Result<Self> {
        match v {
            Value::Object(map) => Ok(Obj {
                path: path.to_string(),
                map,
                used: Vec::new(),
            }),
            other if path.is_empty() => Err(ConfigError::invalid(
                "(top level)",
                format!("must be a JSON object, got {}", kind(other)),
            )),
            other => Err(ConfigError::invalid(
                path,
                format!("must be a JSON object, got {}", kind(other)),
            )),
        }
    }

    /// Dotted path of a key (the top-level object has an empty path).
    pub fn key(&self, k: &str) -> String {
        if self.path.is_empty() {
            k.to_string()
        } else {
            format!("{}.{k}", self.path)
        }
    }

    fn err(&self, k: &str, msg: impl Into<String>) -> ConfigError {
        ConfigError::invalid(self.key(k), msg)
    }

    /// The value of `k`, treating `null` as absent (as Go's decoder does for scalars).
    pub fn get(&mut self, k: &'static str) -> Option<&'a Value> {
        self.used.push(k);
        self.map.get(k).filter(|v| !v.is_null())
    }

    pub fn string(&mut self, k: &'static str) -> Result<Option<String>> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.err(k, format!("must be a string, got {}", kind(other)))),
        }
    }

    /// Missing or "" -> `default`.
    pub fn string_or(&mut self, k: &'static str, default: &str) -> Result<String> {
        Ok(self
            .string(k)?
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| default.to_string()))
    }

    /// Missing -> false (upstream takes booleans literally from JSON).
    pub fn bool(&mut self, k: &'static str) -> Result<bool> {
        self.bool_or(k, false)
    }

    pub fn bool_or(&mut self, k: &'static str, default: bool) -> Result<bool> {
        match self.get(k) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(self.err(k, format!("must be true or false, got {}", kind(other)))),
        }
    }

    pub fn int(&mut self, k: &'static str) -> Result<Option<i64>> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) => Ok(Some(i)),
                None => Err(self.err(k, format!("must be an integer, got {n}"))),
            },
            Some(other) => Err(self.err(k, format!("must be an integer, got {}", kind(other)))),
        }
    }

    pub fn int_or(&mut self, k: &'static str, default: i64) -> Result<i64> {
        Ok(self.int(k)?.unwrap_or(default))
    }

    pub fn uint_or(&mut self, k: &'static str, default: u64) -> Result<u64> {
        match self.get(k) {
            None => Ok(default),
            Some(Value::Number(n)) => n
                .as_u64()
                .ok_or_else(|| self.err(k, format!("must be a non-negative integer, got {n}"))),
            Some(other) => Err(self.err(
                k,
                format!("must be a non-negative integer, got {}", kind(other)),
            )),
        }
    }

    pub fn float_or(&mut self, k: &'static str, default: f64) -> Result<f64> {
        match self.get(k) {
            None => Ok(default),
            Some(Value::Number(n)) => Ok(n.as_f64().unwrap_or(default)),
            Some(other) => Err(self.err(k, format!("must be a number, got {}", kind(other)))),
        }
    }

    /// Missing or "" -> `default`; otherwise a Go duration string.
    pub fn dur_or(&mut self, k: &'static str, default: GoDuration) -> Result<GoDuration> {
        match self.string(k)? {
            None => Ok(default),
            Some(s) if s.is_empty() => Ok(default),
            Some(s) => GoDuration::parse(&s).map_err(|e| self.err(k, e.to_string())),
        }
    }

    /// Like `dur_or`, but a bad string falls back to the default with a warning (upstream's
    /// raft section behaves this way).
    pub fn dur_or_warn(&mut self, k: &'static str, default: GoDuration) -> Result<GoDuration> {
        match self.dur_or(k, default) {
            Ok(d) => Ok(d),
            Err(ConfigError::Invalid { key, msg }) if self.string(k).is_ok() => {
                tracing::warn!("service.json: {key}: {msg}; using the default {default}");
                Ok(default)
            }
            Err(e) => Err(e),
        }
    }

    /// A list of strings given as an array or as one bare string ("" = empty list).
    pub fn strings(&mut self, k: &'static str) -> Result<Option<Vec<String>>> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(Some(Vec::new())),
            Some(Value::String(s)) => Ok(Some(vec![s.clone()])),
            Some(Value::Array(a)) => {
                let mut out = Vec::with_capacity(a.len());
                for (i, v) in a.iter().enumerate() {
                    match v {
                        Value::String(s) => out.push(s.clone()),
                        other => {
                            return Err(self.err(
                                k,
                                format!("entry {i} must be a string, got {}", kind(other)),
                            ))
                        }
                    }
                }
                Ok(Some(out))
            }
            Some(other) => Err(self.err(
                k,
                format!("must be a string or a list of strings, got {}", kind(other)),
            )),
        }
    }

    pub fn maddrs(&mut self, k: &'static str) -> Result<Option<Vec<Multiaddr>>> {
        let Some(list) = self.strings(k)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(list.len());
        for s in list {
            out.push(addr::parse(&s).map_err(|e| self.err(k, e.to_string()))?);
        }
        Ok(Some(out))
    }

    /// One multiaddress; missing or "" -> `default`.
    pub fn maddr_or(&mut self, k: &'static str, default: &str) -> Result<Multiaddr> {
        let s = self.string_or(k, default)?;
        addr::parse(&s).map_err(|e| self.err(k, e.to_string()))
    }

    pub fn str_map(&mut self, k: &'static str) -> Result<Option<BTreeMap<String, String>>> {
        let Some(v) = self.get(k) else {
            return Ok(None);
        };
        let Value::Object(m) = v else {
            return Err(self.err(k, format!("must be an object of strings, got {}", kind(v))));
        };
        let mut out = BTreeMap::new();
        for (key, val) in m {
            match val {
                Value::String(s) => {
                    out.insert(key.clone(), s.clone());
                }
                other => {
                    return Err(self.err(
                        k,
                        format!("value of {key:?} must be a string, got {}", kind(other)),
                    ))
                }
            }
        }
        Ok(Some(out))
    }

    pub fn str_list_map(
        &mut self,
        k: &'static str,
    ) -> Result<Option<BTreeMap<String, Vec<String>>>> {
        let Some(v) = self.get(k) else {
            return Ok(None);
        };
        let Value::Object(m) = v else {
            return Err(self.err(
                k,
                format!("must be an object of string lists, got {}", kind(v)),
            ));
        };
        let mut out = BTreeMap::new();
        for (key, val) in m {
            let list = match val {
                Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>(),
                Value::String(s) => Some(vec![s.clone()]),
                _ => None,
            };
            let Some(list) = list else {
                return Err(self.err(
                    k,
                    format!(
                        "value of {key:?} must be a list of strings, got {}",
                        kind(val)
                    ),
                ));
            };
            out.insert(key.clone(), list);
        }
        Ok(Some(out))
    }

    pub fn obj(&mut self, k: &'static str) -> Result<Option<Obj<'a>>> {
        let path = self.key(k);
        match self.get(k) {
            None => Ok(None),
            Some(v) => Obj::new(&path, v).map(Some),
        }
    }

    /// Warns once per key that no reader asked for.
    pub fn finish(self) {
        for k in self.map.keys() {
            if !self.used.contains(&k.as_str()) {
                if self.path.is_empty() {
                    tracing::warn!("service.json: unknown section {k:?} ignored");
                } else {
                    tracing::warn!("service.json: unknown key {}.{k} ignored", self.path);
                }
            }
        }
    }
}

pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Builds a JSON object in insertion order (serde_json's preserve_order is on).
#[derive(Default)]
pub(crate) struct Out(pub Map<String, Value>);

impl Out {
    pub fn put(&mut self, k: &str, v: impl Into<Value>) -> &mut Self {
        self.0.insert(k.to_string(), v.into());
        self
    }
    pub fn dur(&mut self, k: &str, d: GoDuration) -> &mut Self {
        self.put(k, d.to_string())
    }
    /// Upstream's multiaddress list encoding: bare string for one entry, else an array.
    pub fn maddrs(&mut self, k: &str, list: &[Multiaddr]) -> &mut Self {
        self.put(k, maddrs_value(list))
    }
    pub fn maddr(&mut self, k: &str, a: &Multiaddr) -> &mut Self {
        self.put(k, a.to_string())
    }
    pub fn strings(&mut self, k: &str, list: &[String]) -> &mut Self {
        self.put(
            k,
            Value::Array(list.iter().map(|s| Value::String(s.clone())).collect()),
        )
    }
    pub fn done(self) -> Value {
        Value::Object(self.0)
    }
}

pub(crate) fn maddrs_value(list: &[Multiaddr]) -> Value {
    match list {
        [one] => Value::String(one.to_string()),
        _ => Value::Array(list.iter().map(|a| Value::String(a.to_string())).collect()),
    }
}

/// Parses a list of multiaddress strings (for defaults).
pub(crate) fn ma(list: &[&str]) -> Vec<Multiaddr> {
    list.iter()
        .map(|s| addr::parse(s).expect("built-in default multiaddress"))
        .collect()
}

pub(crate) fn ma1(s: &str) -> Multiaddr {
    addr::parse(s).expect("built-in default multiaddress")
}
