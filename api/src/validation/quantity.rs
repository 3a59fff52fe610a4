//! Kubernetes resource quantities (`100m`, `1Gi`, `1e3`, `0.5`): parsing to an exact
//! value, comparison, and Kubernetes' canonical spelling. The scheduler and quota use
//! [`Quantity::milli_value`] (CPU) and [`Quantity::value`] (bytes, counts).

use std::cmp::Ordering;
use std::fmt;

/// Nano-units per unit: Kubernetes keeps quantities to nano precision.
const NANO: i128 = 1_000_000_000;

/// Why a quantity string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The string is not a number followed by a suffix.
    #[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    Format,
    /// The suffix is not one Kubernetes knows.
    #[error("unable to parse quantity's suffix")]
    Suffix,
    /// The value is beyond what skiff represents (about ±1.7e29).
    #[error("quantity is too large")]
    TooLarge,
}

/// How a quantity was written, which decides its canonical spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Powers of ten with SI suffixes (`m`, `k`, `M`, …) or none.
    DecimalSI,
    /// Powers of two (`Ki`, `Mi`, …).
    BinarySI,
    /// Scientific notation (`1e3`).
    DecimalExponent,
}

/// A parsed quantity: an exact value in nano-units and the format it was written in.
#[derive(Debug, Clone, Copy)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Quantity) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Quantity) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Quantity) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

/// Parses a quantity string as Kubernetes' `resource.ParseQuantity` does.
pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
    Quantity::parse(s)
}

/// Parses a quantity and returns it in milli-units, rounded up (`100m` → 100, `1` → 1000).
pub fn parse_milli(s: &str) -> Result<i128, QuantityError> {
    Ok(Quantity::parse(s)?.milli_value())
}

/// Parses a quantity and returns it in whole units, rounded up (`1Gi` → 1073741824).
pub fn parse_value(s: &str) -> Result<i128, QuantityError> {
    Ok(Quantity::parse(s)?.value())
}

/// Splits a quantity string into sign, integer digits, fraction digits and suffix,
/// following the scanner of Kubernetes' `parseQuantityString`.
fn split(s: &str) -> Result<(bool, &str, &str, &str), QuantityError> {
    let b = s.as_bytes();
    let end = b.len();
    let mut pos = 0;
    let mut positive = true;
    if let Some(&c) = b.first() {
        if c == b'-' {
            positive = false;
            pos += 1;
        } else if c == b'+' {
            pos += 1;
        }
    }
    while pos < end && b[pos] == b'0' {
        pos += 1;
    }
    if pos >= end {
        return Ok((positive, "", "", ""));
    }
    let num_start = pos;
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    let num = &s[num_start..pos];
    let mut denom = "";
    if pos < end && b[pos] == b'.' {
        pos += 1;
        let d_start = pos;
        while pos < end && b[pos].is_ascii_digit() {
            pos += 1;
        }
        denom = &s[d_start..pos];
    }
    let suffix_start = pos;
    while pos < end && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < end && (b[pos] == b'-' || b[pos] == b'+') {
        pos += 1;
    }
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos < end {
        return Err(QuantityError::Format);
    }
    Ok((positive, num, denom, &s[suffix_start..]))
}

/// The multiplier a suffix stands for: (power of two, power of ten, format).
fn interpret_suffix(suffix: &str) -> Result<(u32, i32, Format), QuantityError> {
    let dec = |e| Ok((0, e, Format::DecimalSI));
    let bin = |p| Ok((p, 0, Format::BinarySI));
    match suffix {
        "" => dec(0),
        "n" => dec(-9),
        "u" => dec(-6),
        "m" => dec(-3),
        "k" => dec(3),
        "M" => dec(6),
        "G" => dec(9),
        "T" => dec(12),
        "P" => dec(15),
        "E" => dec(18),
        "Ki" => bin(10),
        "Mi" => bin(20),
        "Gi" => bin(30),
        "Ti" => bin(40),
        "Pi" => bin(50),
        "Ei" => bin(60),
        s if s.starts_with(['e', 'E']) => {
            let digits = &s[1..];
            let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
            if unsigned.is_empty() || !unsigned.bytes().all(|c| c.is_ascii_digit()) {
                return Err(QuantityError::Suffix);
            }
            let e: i64 = digits.parse().map_err(|_| QuantityError::Suffix)?;
            let e = i32::try_from(e).map_err(|_| QuantityError::TooLarge)?;
            Ok((0, e, Format::DecimalExponent))
        }
        _ => Err(QuantityError::Suffix),
    }
}

fn pow10(e: u32) -> Option<i128> {
    10i128.checked_pow(e)
}

impl Quantity {
    /// Parses a quantity string as Kubernetes' `resource.ParseQuantity` does; values
    /// finer than nano-units are rounded up, away from zero, as Kubernetes does.
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        if s.is_empty() {
            return Err(QuantityError::Format);
        }
        let (positive, num, denom, suffix) = split(s)?;
        let (pow2, pow10_exp, format) = interpret_suffix(suffix)?;
        let digits = format!("{num}{denom}");
        let digits = digits.trim_start_matches('0');
        if digits.is_empty() {
            return Ok(Quantity { nanos: 0, format });
        }
        if digits.len() > 38 {
            return Err(QuantityError::TooLarge);
        }
        let mantissa: i128 = digits.parse().map_err(|_| QuantityError::TooLarge)?;
        // value = mantissa * 2^pow2 * 10^(pow10_exp - len(denom)); in nanos, +9.
        let exp10 = i64::from(pow10_exp) - denom.len() as i64 + 9;
        let scaled = mantissa
            .checked_mul(1i128.checked_shl(pow2).ok_or(QuantityError::TooLarge)?)
            .ok_or(QuantityError::TooLarge)?;
        let nanos = if exp10 >= 0 {
            let m = u32::try_from(exp10)
                .ok()
                .and_then(pow10)
                .ok_or(QuantityError::TooLarge)?;
            scaled.checked_mul(m).ok_or(QuantityError::TooLarge)?
        } else {
            match u32::try_from(-exp10).ok().and_then(pow10) {
                Some(d) => scaled / d + i128::from(scaled % d != 0),
                // Far below a nano-unit: rounds up to one.
                None => 1,
            }
        };
        Ok(Quantity {
            nanos: if positive { nanos } else { -nanos },
            format,
        })
    }

    /// A quantity of `nanos` nano-units written in `format`.
    pub fn from_nanos(nanos: i128, format: Format) -> Quantity {
        Quantity { nanos, format }
    }

    /// The exact value in nano-units.
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    /// The format the quantity was written in.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The value in milli-units, rounded up (Kubernetes' `MilliValue`).
    pub fn milli_value(&self) -> i128 {
        ceil_div(self.nanos, NANO / 1000)
    }

    /// The value in whole units, rounded up (Kubernetes' `Value`).
    pub fn value(&self) -> i128 {
        ceil_div(self.nanos, NANO)
    }

    /// Whether the quantity is below zero.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// Whether the quantity is zero.
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Whether the quantity is a whole number of units.
    pub fn is_integer(&self) -> bool {
        self.nanos % NANO == 0
    }

    /// The sum of two quantities, in this one's format; `None` on overflow.
    pub fn checked_add(&self, other: &Quantity) -> Option<Quantity> {
        Some(Quantity {
            nanos: self.nanos.checked_add(other.nanos)?,
            format: self.format,
        })
    }

    /// The quantity rounded up to milli-units, as Kubernetes rounds resource lists.
    pub fn round_up_to_milli(&self) -> Quantity {
        Quantity {
            nanos: self.milli_value().saturating_mul(NANO / 1000),
            format: self.format,
        }
    }

    /// Kubernetes' canonical spelling (`Quantity.String()`): `1500m`, `2`, `1Gi`, `1e3`.
    pub fn canonical(&self) -> String {
        if self.nanos == 0 {
            return "0".to_string();
        }
        let mut format = self.format;
        if format == Format::BinarySI {
            let small = self.nanos > -1024 * NANO && self.nanos < 1024 * NANO;
            if small || self.nanos % NANO != 0 {
                format = Format::DecimalSI;
            }
        }
        if format == Format::BinarySI {
            let mut v = self.nanos / NANO;
            let mut exp = 0usize;
            while exp < 6 && v % 1024 == 0 {
                v /= 1024;
                exp += 1;
            }
            const SUFFIX: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
            return format!("{v}{}", SUFFIX[exp]);
        }
        // Strip factors of ten, then lower the exponent to a multiple of three.
        let mut mantissa = self.nanos;
        let mut exponent: i32 = -9;
        while mantissa % 10 == 0 {
            mantissa /= 10;
            exponent += 1;
        }
        while exponent.rem_euclid(3) != 0 {
            mantissa *= 10;
            exponent -= 1;
        }
        let suffix = match (format, exponent) {
            (Format::DecimalExponent, 0) => String::new(),
            (Format::DecimalExponent, e) => format!("e{e}"),
            (_, -9) => "n".to_string(),
            (_, -6) => "u".to_string(),
            (_, -3) => "m".to_string(),
            (_, 0) => String::new(),
            (_, 3) => "k".to_string(),
            (_, 6) => "M".to_string(),
            (_, 9) => "G".to_string(),
            (_, 12) => "T".to_string(),
            (_, 15) => "P".to_string(),
            (_, 18) => "E".to_string(),
            (_, e) => format!("e{e}"),
        };
        format!("{mantissa}{suffix}")
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical())
    }
}

fn ceil_div(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d > 0 {
        q + 1
    } else {
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_spellings() {
        assert_eq!(parse_milli("100m").unwrap(), 100);
        assert_eq!(parse_milli("0.5").unwrap(), 500);
        assert_eq!(parse_milli("1").unwrap(), 1000);
        assert_eq!(parse_milli(".5").unwrap(), 500);
        assert_eq!(parse_value("1Gi").unwrap(), 1 << 30);
        assert_eq!(parse_value("1e3").unwrap(), 1000);
        assert_eq!(parse_value("1E3").unwrap(), 1000);
        assert_eq!(parse_value("1E").unwrap(), 1_000_000_000_000_000_000);
        assert_eq!(parse_value("128974848").unwrap(), 128_974_848);
        assert_eq!(parse_value("129M").unwrap(), 129_000_000);
        assert_eq!(parse_value("123Mi").unwrap(), 123 * (1 << 20));
        assert_eq!(parse_value("-1").unwrap(), -1);
        assert_eq!(parse_value("+2k").unwrap(), 2000);
        assert_eq!(parse_milli("1n").unwrap(), 1);
        assert_eq!(parse("1.5Gi").unwrap().value(), 3 << 29);
        assert_eq!(parse("1e-12").unwrap().nanos(), 1);
    }

    #[test]
    fn rejects_bad_spellings() {
        assert_eq!(parse(""), Err(QuantityError::Format));
        assert_eq!(parse("abc"), Err(QuantityError::Format));
        assert_eq!(parse("1 Gi"), Err(QuantityError::Format));
        assert_eq!(parse("1mi"), Err(QuantityError::Suffix));
        assert_eq!(parse("1K"), Err(QuantityError::Suffix));
        assert_eq!(parse("1Gi3"), Err(QuantityError::Suffix));
        assert_eq!(parse("1e"), Err(QuantityError::Suffix));
        assert_eq!(parse("1x"), Err(QuantityError::Format));
    }

    #[test]
    fn canonical_spelling_matches_kubernetes() {
        let c = |s: &str| parse(s).unwrap().canonical();
        assert_eq!(c("0.5"), "500m");
        assert_eq!(c("1000m"), "1");
        assert_eq!(c("1.5"), "1500m");
        assert_eq!(c("2000"), "2k");
        assert_eq!(c("1500"), "1500");
        assert_eq!(c("1024Mi"), "1Gi");
        assert_eq!(c("1536Mi"), "1536Mi");
        assert_eq!(c("512"), "512");
        assert_eq!(c("0.5Gi"), "512Mi");
        assert_eq!(c("1e3"), "1e3");
        assert_eq!(c("100m"), "100m");
        assert_eq!(c("0"), "0");
        assert_eq!(c("-1"), "-1");
        assert_eq!(c("1Ki"), "1Ki");
        assert_eq!(c("1000Ki"), "1000Ki");
        assert_eq!(c("0.1Ki"), "102400m");
    }

    #[test]
    fn compares_by_value() {
        assert!(parse("1").unwrap() > parse("999m").unwrap());
        assert_eq!(parse("1Ki").unwrap(), parse("1024").unwrap());
        assert_eq!(
            parse("0.001").unwrap().round_up_to_milli().canonical(),
            "1m"
        );
        assert_eq!(
            parse("0.0001").unwrap().round_up_to_milli().canonical(),
            "1m"
        );
    }
}
