//! Kubernetes' canonical form of a resource quantity (`resource.Quantity.String()`).
//! The API server stores and prints quantities canonically (`1.5Gi` reads back as
//! `1536Mi`), while k8s-openapi keeps the string a client sent, so the printer
//! canonicalizes what it shows.

/// How a quantity was written, which decides how it prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `Ki`, `Mi`, … (powers of 1024).
    BinarySi,
    /// `m`, `k`, `M`, … or no suffix.
    DecimalSi,
    /// `e3`, `E-2`.
    DecimalExponent,
}

/// A parsed quantity: `mantissa * 10^scale`, rounded up to nano units as Kubernetes does.
#[derive(Debug, Clone, Copy)]
struct Quantity {
    mantissa: i128,
    scale: i32,
    format: Format,
}

/// The canonical string of a quantity; a string Kubernetes could not have parsed is
/// returned unchanged rather than failing the whole table.
pub(super) fn canonical(s: &str) -> String {
    parse(s)
        .and_then(Quantity::to_canonical)
        .unwrap_or_else(|| s.to_string())
}

fn parse(s: &str) -> Option<Quantity> {
    let (negative, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (int_part, rest) = rest.split_at(int_len);
    let (frac_part, suffix) = match rest.strip_prefix('.') {
        Some(after) => {
            let n = after.bytes().take_while(u8::is_ascii_digit).count();
            after.split_at(n)
        }
        None => ("", rest),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let (base2_exp, base10_exp, format) = suffix_exponent(suffix)?;
    // Leading zeros would only waste the i128's digits.
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    let mut mantissa: i128 = if digits.is_empty() {
        0
    } else if digits.len() > 36 {
        return None;
    } else {
        digits.parse().ok()?
    };
    let mut scale = base10_exp.checked_sub(i32::try_from(frac_part.len()).ok()?)?;
    if base2_exp > 0 {
        mantissa = mantissa.checked_mul(1i128 << base2_exp)?;
    }
    // Kubernetes rounds any non-zero amount up to a whole nano unit so that a tiny
    // request still asks for something.
    if scale < -9 {
        let shift = u32::try_from(-9 - scale).ok()?;
        let div = 10i128.checked_pow(shift).unwrap_or(i128::MAX);
        let rounded_up = mantissa % div != 0;
        mantissa = mantissa / div + i128::from(rounded_up);
        scale = -9;
    }
    if negative {
        mantissa = -mantissa;
    }
    Some(Quantity {
        mantissa,
        scale,
        format,
    })
}

/// The power of two, power of ten and format a suffix stands for.
fn suffix_exponent(suffix: &str) -> Option<(u32, i32, Format)> {
    let decimal = |e| Some((0, e, Format::DecimalSi));
    let binary = |e| Some((e, 0, Format::BinarySi));
    match suffix {
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "" => decimal(0),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ => {
            let exp = suffix.strip_prefix(['e', 'E'])?;
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let e: i32 = exp.parse().ok()?;
            // Beyond this the value cannot fit anyway.
            (e.abs() <= 60).then_some((0, e, Format::DecimalExponent))
        }
    }
}

impl Quantity {
    /// The value as an integer, if it is one (and fits).
    fn as_integer(&self) -> Option<i128> {
        if self.scale >= 0 {
            self.mantissa
                .checked_mul(10i128.checked_pow(u32::try_from(self.scale).ok()?)?)
        } else {
            let div = 10i128.checked_pow(u32::try_from(-self.scale).ok()?)?;
            (self.mantissa % div == 0).then(|| self.mantissa / div)
        }
    }

    /// Whether -1024 < value < 1024, where binary suffixes would only confuse.
    fn below_1024(&self) -> bool {
        if self.scale >= 0 {
            match self.as_integer() {
                Some(i) => i.abs() < 1024,
                None => false,
            }
        } else {
            let div = 10i128
                .checked_pow(self.scale.unsigned_abs())
                .unwrap_or(i128::MAX);
            // Truncating keeps |value| < 1024 exactly when the whole part is below it.
            (self.mantissa / div).abs() < 1024
        }
    }

    /// `None` only for values too large for the arithmetic here (far beyond int64,
    /// where Kubernetes caps quantities anyway).
    fn to_canonical(self) -> Option<String> {
        if self.mantissa == 0 {
            return Some("0".to_string());
        }
        let mut format = self.format;
        let mut whole = None;
        if format == Format::BinarySi {
            if self.below_1024() {
                format = Format::DecimalSi;
            } else {
                // A fraction would lose precision in binary units.
                whole = self.as_integer();
                if whole.is_none() {
                    format = Format::DecimalSi;
                }
            }
        }
        match (format, whole) {
            (Format::BinarySi, Some(mut n)) => {
                let mut exp = 0;
                while n % 1024 == 0 && exp < 6 {
                    n /= 1024;
                    exp += 1;
                }
                let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][exp];
                Some(format!("{n}{suffix}"))
            }
            _ => {
                let (mut n, mut exp) = (self.mantissa, self.scale);
                while n % 10 == 0 {
                    n /= 10;
                    exp += 1;
                }
                // Decimal suffixes step by thousands.
                let shift = exp.rem_euclid(3);
                n = n.checked_mul(10i128.pow(shift.unsigned_abs()))?;
                exp -= shift;
                Some(format!("{n}{}", decimal_suffix(exp, format)))
            }
        }
    }
}

fn decimal_suffix(exp: i32, format: Format) -> String {
    if format == Format::DecimalSi {
        let si = match exp {
            -9 => Some("n"),
            -6 => Some("u"),
            -3 => Some("m"),
            0 => Some(""),
            3 => Some("k"),
            6 => Some("M"),
            9 => Some("G"),
            12 => Some("T"),
            15 => Some("P"),
            18 => Some("E"),
            _ => None,
        };
        if let Some(si) = si {
            return si.to_string();
        }
    }
    if exp == 0 {
        String::new()
    } else {
        format!("e{exp}")
    }
}

#[cfg(test)]
mod tests {
    use super::canonical;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn canonical_never_panics(
            s in r"[+-]?[0-9]{0,40}(\.[0-9]{0,40})?(n|u|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?[0-9]{1,3})?"
        ) {
            let out = canonical(&s);
            prop_assert!(out == s || !out.is_empty());
        }

        #[test]
        fn canonical_is_idempotent(mantissa in 0i64..1_000_000, suffix in "(m|k|M|G|Ki|Mi|Gi|Ti)?") {
            let once = canonical(&format!("{mantissa}{suffix}"));
            prop_assert_eq!(canonical(&once), once.clone());
        }
    }

    #[test]
    fn quantities_print_in_canonical_form() {
        for (input, want) in [
            ("0", "0"),
            ("0Gi", "0"),
            ("10Gi", "10Gi"),
            ("1024Mi", "1Gi"),
            ("1536Mi", "1536Mi"),
            ("1.5Gi", "1536Mi"),
            ("0.5Gi", "512Mi"),
            ("500m", "500m"),
            ("0.5", "500m"),
            ("1000m", "1"),
            ("1500m", "1500m"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("2000M", "2G"),
            ("100Ki", "100Ki"),
            ("1023Ki", "1023Ki"),
            ("8Ki", "8Ki"),
            ("512", "512"),
            ("1e3", "1e3"),
            ("12e2", "1200"),
            ("1E6", "1e6"),
            ("0.1m", "100u"),
            ("1.0000000001", "1000000001n"),
            ("-1.5", "-1500m"),
            ("+2", "2"),
            ("007", "7"),
            ("bogus", "bogus"),
            ("1Xi", "1Xi"),
            ("", ""),
        ] {
            assert_eq!(canonical(input), want, "canonical({input:?})");
        }
    }
}
