//! Event times: Unix seconds, Unix milliseconds or RFC 3339, always stored as Unix
//! milliseconds.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Numbers below this are Unix seconds, numbers at or above it Unix milliseconds.
///
/// 100,000,000,000 seconds is the year 5138, while 100,000,000,000 milliseconds is
/// 1973-03-03: no real event time is ambiguous under this rule. The seed's own example
/// passes `Date.getTime()` milliseconds where its text says "Unix timestamp".
pub const SECONDS_BELOW: f64 = 100_000_000_000.0;

/// The latest accepted time, 9999-12-31T23:59:59.999Z, so every stored time can be
/// written as RFC 3339.
pub const TIMESTAMP_MS_MAX: i64 = 253_402_300_799_999;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("must be Unix seconds, Unix milliseconds or an RFC 3339 date-time")]
    Format,
    #[error("must be between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z")]
    Range,
}

/// Reads a number of seconds or milliseconds (see [`SECONDS_BELOW`]).
pub fn from_number(number: f64) -> Result<i64, TimestampError> {
    if !number.is_finite() {
        return Err(TimestampError::Format);
    }
    let ms = if number.abs() < SECONDS_BELOW {
        number * 1000.0
    } else {
        number
    };
    let ms = ms.round();
    if !(0.0..=TIMESTAMP_MS_MAX as f64).contains(&ms) {
        return Err(TimestampError::Range);
    }
    Ok(ms as i64)
}

/// Reads a decimal number (seconds or milliseconds) or an RFC 3339 date-time.
pub fn from_str(text: &str) -> Result<i64, TimestampError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(TimestampError::Format);
    }
    let looks_numeric = text.bytes().all(|b| {
        b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'+' || b == b'e' || b == b'E'
    });
    if looks_numeric {
        let number: f64 = text.parse().map_err(|_| TimestampError::Format)?;
        return from_number(number);
    }
    let date_time = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| TimestampError::Format)?;
    let ms = date_time.unix_timestamp_nanos() / 1_000_000;
    if !(0..=i128::from(TIMESTAMP_MS_MAX)).contains(&ms) {
        return Err(TimestampError::Range);
    }
    Ok(ms as i64)
}

/// Reads a JSON number or string.
pub fn from_json(value: &serde_json::Value) -> Result<i64, TimestampError> {
    match value {
        serde_json::Value::Number(number) => match number.as_i64() {
            Some(integer) if integer.unsigned_abs() >= SECONDS_BELOW as u64 => {
                // Exact for milliseconds beyond f64's 53-bit mantissa.
                if (0..=TIMESTAMP_MS_MAX).contains(&integer) {
                    Ok(integer)
                } else {
                    Err(TimestampError::Range)
                }
            }
            _ => from_number(number.as_f64().ok_or(TimestampError::Format)?),
        },
        serde_json::Value::String(text) => from_str(text),
        _ => Err(TimestampError::Format),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_accepted_form() {
        let cases: &[(&str, Result<i64, TimestampError>)] = &[
            ("1499292000", Ok(1_499_292_000_000)),
            ("1499292000000", Ok(1_499_292_000_000)),
            ("1499292000.25", Ok(1_499_292_000_250)),
            ("99999999999", Ok(99_999_999_999_000)),
            ("100000000000", Ok(100_000_000_000)),
            ("0", Ok(0)),
            (" 1499292000 ", Ok(1_499_292_000_000)),
            ("2017-07-06T00:00:00Z", Ok(1_499_299_200_000)),
            ("2017-07-06T02:00:00+02:00", Ok(1_499_299_200_000)),
            ("2017-07-06T00:00:00.123Z", Ok(1_499_299_200_123)),
            ("2017-07-06", Err(TimestampError::Format)),
            ("yesterday", Err(TimestampError::Format)),
            ("", Err(TimestampError::Format)),
            ("1e400", Err(TimestampError::Format)),
            ("-1", Err(TimestampError::Range)),
            ("1969-12-31T23:59:59Z", Err(TimestampError::Range)),
            ("253402300800000", Err(TimestampError::Range)),
        ];
        for (text, expected) in cases {
            assert_eq!(&from_str(text), expected, "input {text:?}");
        }
    }

    #[test]
    fn json_numbers_and_strings_agree() {
        let cases = [
            (serde_json::json!(1_499_292_000), Ok(1_499_292_000_000)),
            (
                serde_json::json!(1_499_292_000_123_i64),
                Ok(1_499_292_000_123),
            ),
            (serde_json::json!(1_499_292_000.5), Ok(1_499_292_000_500)),
            (serde_json::json!("1499292000"), Ok(1_499_292_000_000)),
            (
                serde_json::json!("2017-07-05T22:00:00Z"),
                Ok(1_499_292_000_000),
            ),
            (serde_json::json!(true), Err(TimestampError::Format)),
            (serde_json::json!(null), Err(TimestampError::Format)),
            (serde_json::json!(-5), Err(TimestampError::Range)),
        ];
        for (value, expected) in cases {
            assert_eq!(from_json(&value), expected, "input {value}");
        }
    }
}
