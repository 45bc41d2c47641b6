//! Addresses: what a change, a drift or a difference is about, and what `--target` and
//! `state show` name. Written `KIND.NAME` (`machine.db-01`, `group.sql`, `boot_group.app`,
//! `master_target.mt-01`), or a bare word for the plan's singletons (`boot_order`, `plan`).
//! In JSON an address is that string, so the output formats did not change when addresses
//! got a type.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    Machine(String),
    /// A replication group.
    Group(String),
    BootGroup(String),
    MasterTarget(String),
    /// The boot order as a whole.
    BootOrder,
    /// The plan's own settings (goal, window, site).
    Plan,
}

/// The address forms `--target` takes, for messages.
pub const TARGET_KINDS: &str =
    "`machine.NAME`, `group.NAME`, `boot_group.NAME` or `master_target.NAME`";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an address; use {TARGET_KINDS}")]
pub struct AddressError(pub String);

impl Address {
    pub fn machine(name: impl Into<String>) -> Self {
        Self::Machine(name.into())
    }

    /// The word before the dot, or the whole address of a singleton.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Machine(_) => "machine",
            Self::Group(_) => "group",
            Self::BootGroup(_) => "boot_group",
            Self::MasterTarget(_) => "master_target",
            Self::BootOrder => "boot_order",
            Self::Plan => "plan",
        }
    }

    /// The name after the dot; `None` for a singleton.
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Machine(n) | Self::Group(n) | Self::BootGroup(n) | Self::MasterTarget(n) => {
                Some(n)
            }
            Self::BootOrder | Self::Plan => None,
        }
    }

    /// The machine's name when this addresses a machine.
    pub fn as_machine(&self) -> Option<&str> {
        match self {
            Self::Machine(name) => Some(name),
            _ => None,
        }
    }
}

/// Honours width and alignment (`{:<32}`), as a string would: tables line up on addresses.
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.pad(&format!("{}.{name}", self.kind())),
            None => f.pad(self.kind()),
        }
    }
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Self, AddressError> {
        let refuse = || AddressError(text.to_string());
        match text {
            "boot_order" => return Ok(Self::BootOrder),
            "plan" => return Ok(Self::Plan),
            _ => {}
        }
        let (kind, name) = text.split_once('.').ok_or_else(refuse)?;
        if name.is_empty() {
            return Err(refuse());
        }
        let name = name.to_string();
        Ok(match kind {
            "machine" => Self::Machine(name),
            "group" => Self::Group(name),
            "boot_group" => Self::BootGroup(name),
            "master_target" => Self::MasterTarget(name),
            _ => return Err(refuse()),
        })
    }
}

/// The order of the written form: no kind is a prefix of another, so comparing the kind and
/// then the name orders addresses exactly as their text, without building it.
impl Ord for Address {
    fn cmp(&self, other: &Self) -> Ordering {
        self.kind()
            .cmp(other.kind())
            .then_with(|| self.name().cmp(&other.name()))
    }
}

impl PartialOrd for Address {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Address {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        String::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        String::json_schema(generator)
    }

    fn inline_schema() -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_round_trips_through_its_text() {
        for text in [
            "machine.db-01",
            "group.sql",
            "boot_group.app",
            "master_target.mt-linux-01",
            "boot_order",
            "plan",
            "machine.name.with.dots",
        ] {
            let address: Address = text.parse().expect(text);
            assert_eq!(address.to_string(), text);
        }
    }

    #[test]
    fn malformed_addresses_are_refused_naming_the_forms() {
        for text in ["db-01", "vm.db-01", "machine.", "", "machines.db-01"] {
            let error = text.parse::<Address>().expect_err(text);
            assert!(error.to_string().contains("`machine.NAME`"), "{error}");
        }
    }

    #[test]
    fn width_and_alignment_apply_as_to_a_string() {
        assert_eq!(format!("{:<12}|", Address::machine("a")), "machine.a   |");
        assert_eq!(format!("{:>6}|", Address::Plan), "  plan|");
    }

    #[test]
    fn addresses_order_as_their_text() {
        let mut texts = vec![
            "plan",
            "master_target.b",
            "machine.b",
            "machine.a",
            "boot_order",
            "boot_group.z",
            "group.a",
            "machine.a-1",
        ];
        let mut addresses: Vec<Address> = texts.iter().map(|t| t.parse().expect(t)).collect();
        texts.sort_unstable();
        addresses.sort();
        let sorted: Vec<String> = addresses.iter().map(ToString::to_string).collect();
        assert_eq!(sorted, texts);
    }
}
