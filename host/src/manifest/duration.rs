//! Durations in Go/Kubernetes notation (`30s`, `1m30s`, `500ms`, `1.5h`).

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Units as Go's `time.ParseDuration` spells them, in nanoseconds.
const UNITS: [(&str, u64); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", NANOS_PER_SEC),
    ("m", 60 * NANOS_PER_SEC),
    ("h", 3600 * NANOS_PER_SEC),
];

/// A non-negative span of time, written as a Go duration: one or more
/// `<number><unit>` pairs with units `ns us ms s m h`, e.g. `30s`, `1m30s`, `500ms`,
/// `1.5s`; or `0`. Precision is one nanosecond; the largest value is about 584 years.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KubeDuration(Duration);

impl KubeDuration {
    /// Wraps a `std::time::Duration`.
    pub const fn from_duration(duration: Duration) -> Self {
        KubeDuration(duration)
    }

    /// The span as a `std::time::Duration`.
    pub const fn as_duration(self) -> Duration {
        self.0
    }
}

impl fmt::Display for KubeDuration {
    /// The compact form: `1h30m`, `1m30.5s`, `500ms`, `0s`; it parses back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.0.as_nanos();
        if total == 0 {
            return f.write_str("0s");
        }
        if total < u128::from(NANOS_PER_SEC) {
            let (unit, size) = match total {
                n if n >= 1_000_000 => ("ms", 1_000_000),
                n if n >= 1_000 => ("us", 1_000),
                _ => ("ns", 1),
            };
            return write_scaled(f, total, size, unit);
        }
        let secs = self.0.as_secs();
        let (hours, minutes) = (secs / 3600, secs % 3600 / 60);
        if hours > 0 {
            write!(f, "{hours}h")?;
        }
        if minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        let rest =
            u128::from(secs % 60) * u128::from(NANOS_PER_SEC) + u128::from(self.0.subsec_nanos());
        if rest > 0 {
            write_scaled(f, rest, u128::from(NANOS_PER_SEC), "s")?;
        }
        Ok(())
    }
}

/// Writes `value / size` with as many decimals as needed and none trailing.
fn write_scaled(f: &mut fmt::Formatter<'_>, value: u128, size: u128, unit: &str) -> fmt::Result {
    let (whole, fraction) = (value / size, value % size);
    if fraction == 0 {
        return write!(f, "{whole}{unit}");
    }
    let width = size.ilog10() as usize;
    let digits = format!("{fraction:0width$}");
    write!(f, "{whole}.{}{unit}", digits.trim_end_matches('0'))
}

impl std::str::FromStr for KubeDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.starts_with('-') {
            return Err(format!(
                "\"{s}\" is not a duration; it must not be negative"
            ));
        }
        let nanos = parse_nanos(s)
            .ok_or_else(|| format!("\"{s}\" is not a duration; use e.g. 30s, 1m30s or 500ms"))?;
        u64::try_from(nanos)
            .map(|n| KubeDuration(Duration::from_nanos(n)))
            .map_err(|_| format!("\"{s}\" is too large for a duration"))
    }
}

/// Total nanoseconds of a Go duration string, or `None` if it is not one. Fractions
/// beyond nanosecond precision are truncated, as Go does.
fn parse_nanos(s: &str) -> Option<u128> {
    if s == "0" {
        return Some(0);
    }
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let (number, after) = rest.split_at(number_end);
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let unit = UNITS.iter().find(|(name, _)| *name == unit)?.1;
        total = total.checked_add(scale(number, unit)?)?;
        rest = after;
    }
    (!s.is_empty()).then_some(total)
}

/// `number` (digits with at most one '.') times `unit`, in nanoseconds.
fn scale(number: &str, unit: u64) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    // Digits past the 19th add less than a nanosecond even for hours, so they are dropped.
    let kept = &fraction[..fraction.len().min(19)];
    let fraction_nanos = if kept.is_empty() {
        0
    } else {
        kept.parse::<u128>().ok()? * u128::from(unit) / 10u128.pow(kept.len() as u32)
    };
    whole
        .checked_mul(u128::from(unit))?
        .checked_add(fraction_nanos)
}

impl Serialize for KubeDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KubeDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = KubeDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as 30s, 1m30s or 500ms")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<KubeDuration, E> {
        v.parse().map_err(E::custom)
    }

    // A bare YAML number has no unit; parsing its text gives the usual message (except `0`).
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<KubeDuration, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<KubeDuration, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<KubeDuration, E> {
        self.visit_str(&v.to_string())
    }
}

impl JsonSchema for KubeDuration {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A Go duration: one or more <number><unit> pairs with units ns, us, ms, s, m, h, e.g. 30s, 1m30s, 500ms.",
            "type": "string",
            "pattern": "^(0|(([0-9]+(\\.[0-9]*)?|\\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_accepted_form() {
        let ms = |n: u64| Duration::from_millis(n);
        let cases: &[(&str, Duration)] = &[
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("30s", ms(30_000)),
            ("1m30s", ms(90_000)),
            ("500ms", ms(500)),
            ("2h", ms(7_200_000)),
            ("1.5s", ms(1_500)),
            (".5s", ms(500)),
            ("1.s", ms(1_000)),
            ("1h2m3s4ms", ms(3_723_004)),
            ("250us", Duration::from_micros(250)),
            ("250µs", Duration::from_micros(250)),
            ("7ns", Duration::from_nanos(7)),
            ("0.5m", ms(30_000)),
            ("1.0000000000000000000001h", ms(3_600_000)),
        ];
        for (input, expected) in cases {
            let d: KubeDuration = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(d.as_duration(), *expected, "{input}");
        }
    }

    #[test]
    fn rejects_bad_forms_with_the_specific_message() {
        let generic = |s: &str| format!("\"{s}\" is not a duration; use e.g. 30s, 1m30s or 500ms");
        for input in [
            "30 secs", "30", "", "s", "1.2.3s", "30sec", "1d", "30S", "..s", "+5s",
        ] {
            assert_eq!(
                input.parse::<KubeDuration>().unwrap_err(),
                generic(input),
                "{input}"
            );
        }
        assert_eq!(
            "-5s".parse::<KubeDuration>().unwrap_err(),
            "\"-5s\" is not a duration; it must not be negative"
        );
        assert_eq!(
            "99999999999h".parse::<KubeDuration>().unwrap_err(),
            "\"99999999999h\" is too large for a duration"
        );
    }

    #[test]
    fn rejects_bare_yaml_numbers_but_accepts_zero() {
        let err = serde_norway::from_str::<KubeDuration>("30").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"30\" is not a duration; use e.g. 30s, 1m30s or 500ms"
        );
        let zero: KubeDuration = serde_norway::from_str("0").unwrap();
        assert_eq!(zero.as_duration(), Duration::ZERO);
    }

    #[test]
    fn displays_a_compact_form_that_parses_back() {
        let cases: &[(&str, &str)] = &[
            ("0", "0s"),
            ("30s", "30s"),
            ("90s", "1m30s"),
            ("1h0m0s", "1h"),
            ("3600.5s", "1h0.5s"),
            ("1500ms", "1.5s"),
            ("500ms", "500ms"),
            ("1.5ms", "1.5ms"),
            ("250us", "250us"),
            ("7ns", "7ns"),
            ("61m", "1h1m"),
        ];
        for (input, shown) in cases {
            let d: KubeDuration = input.parse().unwrap();
            assert_eq!(d.to_string(), *shown, "{input}");
            assert_eq!(
                shown.parse::<KubeDuration>().unwrap(),
                d,
                "round trip of {input}"
            );
        }
    }
}
