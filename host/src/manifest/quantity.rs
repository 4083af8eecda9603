//! Byte counts in Kubernetes quantity notation (`64Mi`, `1G`, `1048576`).

use std::borrow::Cow;
use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Suffixes in the order `Display` tries them: binary first, so `64Mi` stays `64Mi`.
const SUFFIXES: [(&str, u64); 8] = [
    ("Ti", 1 << 40),
    ("Gi", 1 << 30),
    ("Mi", 1 << 20),
    ("Ki", 1 << 10),
    ("T", 1_000_000_000_000),
    ("G", 1_000_000_000),
    ("M", 1_000_000),
    ("k", 1_000),
];

/// What the error message offers when nothing better can be computed from the input.
const GENERIC_EXAMPLES: &str = "use e.g. 64Mi, 1Gi or 1048576";

/// A number of bytes, written as a Kubernetes quantity.
///
/// Accepted: a plain integer (YAML number or string) or an integer with one of the
/// suffixes `Ki Mi Gi Ti` (powers of 1024) or `k M G T` (powers of 1000). Fractions,
/// exponents and milli (`m`) are rejected because a byte count must be whole; the error
/// suggests the nearest valid spelling (`"64MB"` → `64Mi`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity(u64);

impl Quantity {
    /// A quantity of exactly `bytes` bytes.
    pub const fn from_bytes(bytes: u64) -> Self {
        Quantity(bytes)
    }

    /// The number of bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

/// Bytes in binary units, e.g. `1.5 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl fmt::Display for Quantity {
    /// The compact canonical form: the largest suffix that divides the value exactly.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        if n != 0 {
            if let Some((suffix, unit)) = SUFFIXES.iter().find(|(_, unit)| n.is_multiple_of(*unit))
            {
                return write!(f, "{}{suffix}", n / unit);
            }
        }
        write!(f, "{n}")
    }
}

impl std::str::FromStr for Quantity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, suffix) = s.split_at(digits_end);
        let unit = match suffix {
            "" => Some(1),
            _ => SUFFIXES
                .iter()
                .find(|(name, _)| *name == suffix)
                .map(|(_, unit)| *unit),
        };
        let (Some(unit), false) = (unit, digits.is_empty()) else {
            return Err(not_a_quantity(s));
        };
        digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit))
            .map(Quantity)
            .ok_or_else(|| format!("\"{s}\" is too large for a byte count"))
    }
}

/// The error for an unparsable quantity, with a corrected spelling when one can be guessed.
fn not_a_quantity(input: &str) -> String {
    match guess_bytes(input) {
        Some(bytes) if Quantity(bytes).to_string() == bytes.to_string() => {
            format!("\"{input}\" is not a quantity; use {bytes}")
        }
        Some(bytes) => {
            format!(
                "\"{input}\" is not a quantity; use {} or {bytes}",
                Quantity(bytes)
            )
        }
        None => format!("\"{input}\" is not a quantity; {GENERIC_EXAMPLES}"),
    }
}

/// Reads what the author probably meant: `64MB`, `64 mib`, `1.5Gi`, `100B`. Unit letters
/// other than the valid decimal suffixes are taken as binary, as memory sizes usually are.
fn guess_bytes(input: &str) -> Option<u64> {
    let input = input.trim();
    let number_end = input
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(input.len());
    let (number, suffix) = input.split_at(number_end);
    let suffix = suffix.trim();
    let unit = match SUFFIXES.iter().find(|(name, _)| *name == suffix) {
        Some((_, unit)) => *unit,
        None => match suffix.to_ascii_lowercase().as_str() {
            "" | "b" | "byte" | "bytes" => 1,
            "k" | "kb" | "ki" | "kib" => 1 << 10,
            "m" | "mb" | "mi" | "mib" => 1 << 20,
            "g" | "gb" | "gi" | "gib" => 1 << 30,
            "t" | "tb" | "ti" | "tib" => 1 << 40,
            _ => return None,
        },
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.len() > 18 {
        return None;
    }
    // Fixed-point arithmetic: the guess is offered only when it is a whole number of bytes.
    let scale = 10u128.pow(fraction.len() as u32);
    let mantissa: u128 = format!("{whole}{fraction}").parse().ok()?;
    let scaled = mantissa.checked_mul(u128::from(unit))?;
    if !scaled.is_multiple_of(scale) {
        return None;
    }
    u64::try_from(scaled / scale).ok()
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(QuantityVisitor)
    }
}

struct QuantityVisitor;

impl Visitor<'_> for QuantityVisitor {
    type Value = Quantity;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a quantity such as 64Mi or 67108864")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
        Ok(Quantity(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
        u64::try_from(v).map(Quantity).map_err(|_| {
            E::custom(format!(
                "\"{v}\" is not a quantity; it must not be negative"
            ))
        })
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
        Err(E::custom(not_a_quantity(&v.to_string())))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
        v.parse().map_err(E::custom)
    }
}

impl JsonSchema for Quantity {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Quantity".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        // int-or-string like Kubernetes' own resource.Quantity, narrowed to whole byte counts.
        json_schema!({
            "description": "A byte count: an integer, or an integer with a suffix Ki, Mi, Gi, Ti (powers of 1024) or k, M, G, T (powers of 1000).",
            "x-kubernetes-int-or-string": true,
            "pattern": "^[0-9]+(Ki|Mi|Gi|Ti|k|M|G|T)?$",
            "x-kubernetes-validations": [{
                "rule": "string(self).matches('^0*[1-9][0-9]*(Ki|Mi|Gi|Ti|k|M|G|T)?$')",
                "message": "must be greater than 0"
            }],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_accepted_form() {
        let cases: &[(&str, u64)] = &[
            ("0", 0),
            ("67108864", 64 << 20),
            ("1Ki", 1024),
            ("64Mi", 64 << 20),
            ("4Gi", 4 << 30),
            ("2Ti", 2 << 40),
            ("1k", 1_000),
            ("5M", 5_000_000),
            ("3G", 3_000_000_000),
            ("1T", 1_000_000_000_000),
        ];
        for (input, bytes) in cases {
            let q: Quantity = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(q.bytes(), *bytes, "{input}");
        }
    }

    #[test]
    fn accepts_yaml_integers_and_strings() {
        let from_int: Quantity = serde_norway::from_str("1048576").unwrap();
        let from_str: Quantity = serde_norway::from_str("\"1Mi\"").unwrap();
        assert_eq!(from_int, from_str);
    }

    #[test]
    fn rejects_bad_forms_with_a_computed_suggestion() {
        let cases: &[(&str, &str)] = &[
            ("64MB", "\"64MB\" is not a quantity; use 64Mi or 67108864"),
            ("64mb", "\"64mb\" is not a quantity; use 64Mi or 67108864"),
            ("64m", "\"64m\" is not a quantity; use 64Mi or 67108864"),
            ("10KiB", "\"10KiB\" is not a quantity; use 10Ki or 10240"),
            (
                "1.5Gi",
                "\"1.5Gi\" is not a quantity; use 1536Mi or 1610612736",
            ),
            (
                "1.5G",
                "\"1.5G\" is not a quantity; use 1500M or 1500000000",
            ),
            ("64 Mi", "\"64 Mi\" is not a quantity; use 64Mi or 67108864"),
            ("100B", "\"100B\" is not a quantity; use 100"),
            (
                "1.5",
                "\"1.5\" is not a quantity; use e.g. 64Mi, 1Gi or 1048576",
            ),
            (
                "lots",
                "\"lots\" is not a quantity; use e.g. 64Mi, 1Gi or 1048576",
            ),
            (
                "Mi",
                "\"Mi\" is not a quantity; use e.g. 64Mi, 1Gi or 1048576",
            ),
            ("", "\"\" is not a quantity; use e.g. 64Mi, 1Gi or 1048576"),
            (
                "-1",
                "\"-1\" is not a quantity; use e.g. 64Mi, 1Gi or 1048576",
            ),
            (
                "1e6",
                "\"1e6\" is not a quantity; use e.g. 64Mi, 1Gi or 1048576",
            ),
            ("99999999Ti", "\"99999999Ti\" is too large for a byte count"),
        ];
        for (input, expected) in cases {
            assert_eq!(input.parse::<Quantity>().unwrap_err(), *expected, "{input}");
        }
    }

    #[test]
    fn rejects_negative_yaml_integers() {
        let err = serde_norway::from_str::<Quantity>("-5").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"-5\" is not a quantity; it must not be negative"
        );
    }

    #[test]
    fn displays_the_compact_canonical_form() {
        let cases: &[(u64, &str)] = &[
            (0, "0"),
            (64 << 20, "64Mi"),
            (1536 << 20, "1536Mi"),
            (1 << 30, "1Gi"),
            (1_000_000, "1M"),
            (2_000, "2k"),
            (1023, "1023"),
        ];
        for (bytes, shown) in cases {
            assert_eq!(Quantity::from_bytes(*bytes).to_string(), *shown);
            assert_eq!(
                shown.parse::<Quantity>().unwrap().bytes(),
                *bytes,
                "round trip"
            );
        }
    }
}
