//! Kubernetes resource quantities, compared by value: `"1000m"` equals `"1"`, `"1Gi"` equals
//! `"1073741824"`, `"1e3"` equals `"1k"`.

use std::fmt;

use serde_json::Value;

/// An error reading a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuantityError {
    /// The text is not a quantity.
    #[error("{text:?} is not a quantity: {reason}")]
    Invalid {
        /// The text as given.
        text: String,
        /// Why.
        reason: &'static str,
    },
    /// The value does not fit.
    #[error("quantity {text:?} is out of range")]
    OutOfRange {
        /// The text as given.
        text: String,
    },
}

/// A quantity as an exact count of nano-units (10⁻⁹), rounded up as Kubernetes rounds.
///
/// ```
/// use gitops_diff::Quantity;
///
/// assert_eq!(Quantity::parse("1000m")?, Quantity::parse("1")?);
/// assert_eq!(Quantity::parse("1Gi")?, Quantity::parse("1073741824")?);
/// assert_eq!(Quantity::parse("1.5")?, Quantity::parse("1500m")?);
/// assert_eq!(Quantity::parse("2e3")?, Quantity::parse("2k")?);
/// assert!(Quantity::parse("12 apples").is_err());
/// # Ok::<(), gitops_diff::QuantityError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity {
    nanos: i128,
}

impl Quantity {
    /// The value in nano-units.
    #[must_use]
    pub fn nanos(self) -> i128 {
        self.nanos
    }

    /// Parses the Kubernetes quantity syntax: a signed decimal number and an optional suffix
    /// (`n u m k M G T P E`, `Ki Mi Gi Ti Pi Ei`, or an exponent `e<int>`/`E<int>`).
    ///
    /// # Errors
    /// When the text is not a quantity or is too large.
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let invalid = |reason| QuantityError::Invalid {
            text: text.to_owned(),
            reason,
        };
        let out_of_range = || QuantityError::OutOfRange {
            text: text.to_owned(),
        };
        let trimmed = text.trim();
        let (negative, rest) = match trimmed.as_bytes().first() {
            Some(b'-') => (true, &trimmed[1..]),
            Some(b'+') => (false, &trimmed[1..]),
            Some(_) => (false, trimmed),
            None => return Err(invalid("it is empty")),
        };
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() {
            return Err(invalid("it has no digits"));
        }
        if fraction.contains('.') {
            return Err(invalid("it has two decimal points"));
        }
        let mut mantissa: i128 = 0;
        for digit in whole.bytes().chain(fraction.bytes()) {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(i128::from(digit - b'0')))
                .ok_or_else(out_of_range)?;
        }
        let fraction_digits = i32::try_from(fraction.len()).map_err(|_| out_of_range())?;
        // value = mantissa * 10^(exponent10) * 1024^(exponent2), in nanos: exponent10 += 9.
        let (exponent10, exponent2): (i32, u32) = match suffix {
            "" => (0, 0),
            "n" => (-9, 0),
            "u" => (-6, 0),
            "m" => (-3, 0),
            "k" => (3, 0),
            "M" => (6, 0),
            "G" => (9, 0),
            "T" => (12, 0),
            "P" => (15, 0),
            "E" => (18, 0),
            "Ki" => (0, 1),
            "Mi" => (0, 2),
            "Gi" => (0, 3),
            "Ti" => (0, 4),
            "Pi" => (0, 5),
            "Ei" => (0, 6),
            other => match other.strip_prefix(['e', 'E']) {
                Some(exponent) => (
                    exponent
                        .parse::<i32>()
                        .map_err(|_| invalid("its suffix is not a unit or an exponent"))?,
                    0,
                ),
                None => return Err(invalid("its suffix is not a unit or an exponent")),
            },
        };
        let mut value = mantissa;
        for _ in 0..exponent2 {
            value = value.checked_mul(1024).ok_or_else(out_of_range)?;
        }
        let shift = exponent10
            .checked_add(9)
            .and_then(|e| e.checked_sub(fraction_digits))
            .ok_or_else(out_of_range)?;
        if shift >= 0 {
            let factor = 10i128
                .checked_pow(u32::try_from(shift).map_err(|_| out_of_range())?)
                .ok_or_else(out_of_range)?;
            value = value.checked_mul(factor).ok_or_else(out_of_range)?;
        } else {
            let divisor = 10i128.checked_pow(shift.unsigned_abs());
            value = match divisor {
                // Below a nano-unit: rounded up, as Kubernetes does (without the overflow of
                // `value + divisor - 1` near the top of the range).
                Some(divisor) => value / divisor + i128::from(value % divisor != 0),
                None => i128::from(value != 0),
            };
        }
        Ok(Self {
            nanos: if negative { -value } else { value },
        })
    }

    /// Reads a quantity from JSON: a string, or a number as YAML renders `cpu: 1`.
    ///
    /// # Errors
    /// When the value is neither, or not a valid quantity.
    pub fn from_json(value: &Value) -> Result<Self, QuantityError> {
        match value {
            Value::String(text) => Self::parse(text),
            Value::Number(n) => Self::parse(&n.to_string()),
            other => Err(QuantityError::Invalid {
                text: other.to_string(),
                reason: "it is neither a string nor a number",
            }),
        }
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.nanos / 1_000_000_000;
        let fraction = (self.nanos % 1_000_000_000).unsigned_abs();
        if fraction == 0 {
            write!(f, "{whole}")
        } else {
            let sign = if self.nanos < 0 && whole == 0 {
                "-"
            } else {
                ""
            };
            let digits = format!("{fraction:09}");
            write!(f, "{sign}{whole}.{}", digits.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_quantities_in_every_notation() {
        let same = [
            ("1000m", "1"),
            ("1Gi", "1073741824"),
            ("0.5", "500m"),
            ("1k", "1000"),
            ("1e3", "1k"),
            ("1E3", "1000"),
            ("1Ki", "1024"),
            ("128Mi", "134217728"),
            ("+2", "2"),
            ("0.1m", "100u"),
            ("1.5Gi", "1536Mi"),
            ("1n", "0.000000001"),
        ];
        for (a, b) in same {
            assert_eq!(
                Quantity::parse(a).unwrap(),
                Quantity::parse(b).unwrap(),
                "{a} = {b}"
            );
        }
        assert_ne!(
            Quantity::parse("1").unwrap(),
            Quantity::parse("1m").unwrap()
        );
        assert_eq!(Quantity::parse("-1.5").unwrap().to_string(), "-1.5");
        assert_eq!(Quantity::parse("250m").unwrap().to_string(), "0.25");
        assert_eq!(
            Quantity::from_json(&json!(2)).unwrap(),
            Quantity::parse("2").unwrap()
        );
        assert_eq!(
            Quantity::from_json(&json!(0.5)).unwrap(),
            Quantity::parse("500m").unwrap()
        );
    }

    #[test]
    fn rounds_up_below_a_nano_unit() {
        assert_eq!(Quantity::parse("0.0000000001").unwrap().nanos(), 1);
    }

    /// Found by the `quantity` fuzz target: a mantissa near the top of the range below a
    /// nano-unit overflowed while rounding up (a panic with overflow checks on).
    #[test]
    fn rounding_up_near_the_top_of_the_range_does_not_overflow() {
        let text = ".00000000100000000000000000000000000000000000001";
        assert_eq!(Quantity::parse(text).unwrap().nanos(), 2);
        let printed = Quantity::parse(text).unwrap().to_string();
        assert_eq!(Quantity::parse(&printed).unwrap().nanos(), 2);
    }

    #[test]
    fn rejects_what_is_not_a_quantity() {
        for bad in ["", "abc", "1.2.3", "1Xi", "1e", "1 k", ".", "-"] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(matches!(
            Quantity::parse("1e400"),
            Err(QuantityError::OutOfRange { .. })
        ));
        assert!(Quantity::from_json(&json!(true)).is_err());
    }
}
