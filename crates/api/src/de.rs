//! Serde helpers that make input decoding as lenient as Go's encoding/json: a JSON `null`
//! for a plain value (string, number, bool, list) leaves it at its zero value.
use serde::{Deserialize, Deserializer};

/// `null` (or a missing field, with `#[serde(default)]`) decodes to `T::default()`.
pub fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Implements Serialize/Deserialize as a JSON string for an enum with `as_str()` and a
/// lenient `from_name()` (unknown names map to a default variant, as upstream). `null`
/// decodes to `Default`.
macro_rules! string_serde {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let v: Option<String> = serde::Deserialize::deserialize(d)?;
                Ok(match v {
                    Some(s) => <$t>::from_name(&s),
                    None => <$t>::default(),
                })
            }
        }
    };
}
pub(crate) use string_serde;
