//! `NamedMap<T>`: a YAML mapping from names to entries that keeps every key's span, keeps the
//! file's order, and keeps duplicate keys.
//!
//! Keeping duplicates is deliberate: the loader runs serde-saphyr with
//! `DuplicateKeyPolicy::PassThrough`, so a machine defined twice reaches validation, which
//! reports `plan::duplicate` with a label on both definitions instead of one opaque parse error.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::span::Spanned;

#[derive(Clone)]
pub struct NamedMap<T> {
    entries: Vec<(Spanned<String>, Spanned<T>)>,
}

impl<T> Default for NamedMap<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for NamedMap<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

impl<T: PartialEq> PartialEq for NamedMap<T> {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl<T> NamedMap<T> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, name: impl Into<String>, value: T) {
        self.entries
            .push((Spanned::bare(name.into()), Spanned::bare(value)));
    }

    pub fn push(&mut self, name: Spanned<String>, value: Spanned<T>) {
        self.entries.push((name, value));
    }

    /// Every entry in file order, duplicates included.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&Spanned<String>, &Spanned<T>)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// The entries, in order, duplicates included.
    pub fn into_entries(self) -> impl Iterator<Item = (Spanned<String>, Spanned<T>)> {
        self.entries.into_iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.value.as_str())
    }

    /// An index from name to the position of its first definition. Later duplicates are not
    /// indexed; validation reports them.
    pub fn index(&self) -> HashMap<&str, usize> {
        let mut index = HashMap::with_capacity(self.entries.len());
        for (i, (name, _)) in self.entries.iter().enumerate() {
            index.entry(name.value.as_str()).or_insert(i);
        }
        index
    }

    pub fn get_index(&self, i: usize) -> (&Spanned<String>, &Spanned<T>) {
        let (k, v) = &self.entries[i];
        (k, v)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NamedMap<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NamedMapVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for NamedMapVisitor<T> {
            type Value = NamedMap<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping from names to entries")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(NamedMap { entries })
            }

            // `machines:` with nothing after it is an empty map, not a type error.
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(NamedMap::default())
            }
        }

        deserializer.deserialize_map(NamedMapVisitor(PhantomData))
    }
}

impl<T: Serialize> Serialize for NamedMap<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.entries.iter().map(|(k, v)| (&k.value, &v.value)))
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for NamedMap<T> {
    fn schema_name() -> Cow<'static, str> {
        format!("NamedMap_of_{}", T::schema_name()).into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "additionalProperties": generator.subschema_for::<T>(),
        })
    }

    fn inline_schema() -> bool {
        true
    }
}
