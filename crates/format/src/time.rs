//! Event times given as text: the one parser every path uses (pushed JSON, CSV and
//! Parquet text cells, CLI flags, request bodies), so the same text means the same
//! instant everywhere.
//!
//! Accepted forms:
//!
//! * **Epoch milliseconds**: an optional sign and ASCII digits (`1763780000000`, `-5`),
//!   any value of an `i64`. A longer number is an error, never wrapped or clamped.
//! * **RFC 3339 date-times** (section 5.6), parsed by `chrono`: `2025-11-22T05:33:20Z`,
//!   `2025-11-22T05:33:20.123+02:00`, `2025-11-22 05:33:20-05:30`. The offset is
//!   required and applied (`+02:00` is two hours *ahead* of UTC, so the instant is two
//!   hours earlier than the same digits with `Z`); `T`/`Z` may be lower case and a space
//!   may separate date and time. Fractions of 1 to 9 digits are read and truncated
//!   toward the past to whole milliseconds (digits past the ninth are ignored).
//!   Years are the four digits RFC 3339 allows, 0000 to 9999, all of which fit epoch
//!   milliseconds.
//!
//! Leap seconds: second `60` is accepted only where a leap second can be, at 23:59:60
//! UTC (in any offset: `08:59:60+09:00`). Epoch milliseconds cannot represent it, so it
//! is read like POSIX time does: as the following second, `23:59:60.250Z` being
//! `00:00:00.250Z` of the next day. Times stay monotonic (`23:59:59.999` <
//! `23:59:60.000`), but `23:59:60.x` and `00:00:00.x` of the next day are one instant.
//!
//! Surrounding ASCII whitespace is ignored. Anything else (no offset, month 13, hour
//! 25, `23:60:00`, a five-digit year) is a [`TimestampError`] that quotes the text.
//!
//! Pure functions; safe from any thread.

use chrono::{DateTime, FixedOffset, Timelike};

use crate::types::TimestampMs;

/// Why a text is not an event time. Every variant quotes the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimestampError {
    /// All digits, but beyond a signed 64-bit count of milliseconds.
    #[error(
        "`{text}` is out of range for epoch milliseconds (at most {max} in magnitude)",
        max = i64::MAX
    )]
    MillisOutOfRange {
        /// The text given.
        text: String,
    },
    /// An RFC 3339 date-time without its UTC offset, which would be ambiguous.
    #[error("`{text}` has no UTC offset: add `Z` (UTC) or `+hh:mm` / `-hh:mm` after the time")]
    NoOffset {
        /// The text given.
        text: String,
    },
    /// RFC 3339 in shape, but a field is out of its range.
    #[error(
        "`{text}` is out of range: month 01-12, day within the month, hour 00-23, minute \
         00-59, second 00-59 (60 only at 23:59:60 UTC), offset within ±23:59"
    )]
    FieldOutOfRange {
        /// The text given.
        text: String,
    },
    /// Neither form.
    #[error(
        "`{text}` is neither epoch milliseconds nor an RFC 3339 date-time like \
         2025-11-22T05:33:20.123+02:00 ({reason})"
    )]
    Invalid {
        /// The text given.
        text: String,
        /// What the RFC 3339 parser found.
        reason: String,
    },
}

/// Parses an event time: epoch milliseconds or an RFC 3339 date-time with its offset
/// (see the module docs for the exact rules).
pub fn parse_timestamp_ms(text: &str) -> Result<TimestampMs, TimestampError> {
    let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<i64>()
            .map_err(|_| TimestampError::MillisOutOfRange {
                text: text.to_owned(),
            });
    }
    let time = DateTime::parse_from_rfc3339(text).map_err(|e| rfc3339_error(text, e))?;
    if time.nanosecond() >= 1_000_000_000 {
        // chrono reads second 60 as second 59 plus a second of nanoseconds, wherever
        // it appears; only 23:59:60 UTC can be a leap second.
        let utc = time.naive_utc();
        if (utc.hour(), utc.minute()) != (23, 59) {
            return Err(TimestampError::FieldOutOfRange {
                text: text.to_owned(),
            });
        }
    }
    Ok(time.timestamp_millis())
}

/// The error for `text`, which chrono refused with `e`.
fn rfc3339_error(text: &str, e: chrono::ParseError) -> TimestampError {
    let owned = || text.to_owned();
    // Well-formed but for the offset: say so rather than "premature end of input".
    let with_offset = format!("{text}Z");
    if DateTime::<FixedOffset>::parse_from_rfc3339(&with_offset).is_ok() {
        return TimestampError::NoOffset { text: owned() };
    }
    match e.kind() {
        chrono::format::ParseErrorKind::OutOfRange | chrono::format::ParseErrorKind::Impossible => {
            TimestampError::FieldOutOfRange { text: owned() }
        }
        _ => TimestampError::Invalid {
            text: owned(),
            reason: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2025-11-22T05:33:20Z.
    const BASE: i64 = 1_763_789_600_000;
    const HOUR: i64 = 3_600_000;
    const MINUTE: i64 = 60_000;

    #[test]
    fn epoch_milliseconds_are_read_as_integers() {
        assert_eq!(parse_timestamp_ms("1000"), Ok(1000));
        assert_eq!(parse_timestamp_ms(" 1000\t"), Ok(1000));
        assert_eq!(parse_timestamp_ms("-5"), Ok(-5));
        assert_eq!(parse_timestamp_ms("+5"), Ok(5));
        assert_eq!(parse_timestamp_ms(&i64::MAX.to_string()), Ok(i64::MAX));
        assert_eq!(parse_timestamp_ms(&i64::MIN.to_string()), Ok(i64::MIN));
    }

    #[test]
    fn epoch_milliseconds_beyond_i64_are_errors() {
        for text in [
            "9223372036854775808",
            "-9223372036854775809",
            "99999999999999999999999",
        ] {
            assert_eq!(
                parse_timestamp_ms(text),
                Err(TimestampError::MillisOutOfRange { text: text.into() }),
                "{text}"
            );
        }
        let message = parse_timestamp_ms("9223372036854775808")
            .expect_err("overflow")
            .to_string();
        assert!(message.contains("out of range"), "{message}");
    }

    #[test]
    fn offsets_are_applied() {
        let cases = [
            ("2025-11-22T05:33:20Z", BASE),
            ("2025-11-22T05:33:20z", BASE),
            ("2025-11-22t05:33:20Z", BASE),
            ("2025-11-22 05:33:20Z", BASE),
            ("2025-11-22T05:33:20+00:00", BASE),
            ("2025-11-22T05:33:20-00:00", BASE),
            ("2025-11-22T05:33:20+02:00", BASE - 2 * HOUR),
            ("2025-11-22T05:33:20+09:00", BASE - 9 * HOUR),
            ("2025-11-22T05:33:20-05:30", BASE + 5 * HOUR + 30 * MINUTE),
            ("2025-11-22T05:33:20+23:59", BASE - 23 * HOUR - 59 * MINUTE),
            // The reproduction: a fraction and an offset together.
            ("2025-11-22T05:33:20.123+02:00", BASE - 2 * HOUR + 123),
            ("2025-11-22T05:33:20.123+09:00", BASE - 9 * HOUR + 123),
            (
                "2025-11-22T05:33:20.123-05:30",
                BASE + 5 * HOUR + 30 * MINUTE + 123,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse_timestamp_ms(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn one_instant_in_every_offset_reads_the_same() {
        for text in [
            "2025-11-22T05:33:20.5Z",
            "2025-11-22T07:33:20.5+02:00",
            "2025-11-22T14:33:20.5+09:00",
            "2025-11-22T00:03:20.5-05:30",
            "2025-11-21T23:33:20.5-06:00",
        ] {
            assert_eq!(parse_timestamp_ms(text), Ok(BASE + 500), "{text}");
        }
    }

    #[test]
    fn fractions_of_every_length_truncate_to_milliseconds() {
        let digits = "987654321";
        let want = [900, 980, 987, 987, 987, 987, 987, 987, 987];
        for (len, want) in (1..=9).zip(want) {
            let fraction = &digits[..len];
            for offset in ["Z", "+02:00"] {
                let text = format!("2025-11-22T05:33:20.{fraction}{offset}");
                let shift = if offset == "Z" { 0 } else { -2 * HOUR };
                assert_eq!(parse_timestamp_ms(&text), Ok(BASE + shift + want), "{text}");
            }
        }
        // No fraction, a zero fraction, and digits past the ninth (ignored).
        assert_eq!(parse_timestamp_ms("2025-11-22T05:33:20Z"), Ok(BASE));
        assert_eq!(parse_timestamp_ms("2025-11-22T05:33:20.000Z"), Ok(BASE));
        assert_eq!(
            parse_timestamp_ms("2025-11-22T05:33:20.999999999999Z"),
            Ok(BASE + 999)
        );
    }

    #[test]
    fn times_before_1970_truncate_toward_the_past() {
        assert_eq!(parse_timestamp_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_timestamp_ms("1969-12-31T23:59:59.9995Z"), Ok(-1));
        assert_eq!(parse_timestamp_ms("1969-12-31T23:59:59Z"), Ok(-1000));
        assert_eq!(
            parse_timestamp_ms("0000-01-01T00:00:00Z"),
            Ok(-62_167_219_200_000)
        );
        assert_eq!(
            parse_timestamp_ms("9999-12-31T23:59:59.999Z"),
            Ok(253_402_300_799_999)
        );
    }

    #[test]
    fn a_leap_second_reads_as_the_next_second() {
        // 2016-12-31T23:59:60Z was a real leap second; 2017-01-01T00:00:00Z follows.
        let next_day = 1_483_228_800_000;
        assert_eq!(parse_timestamp_ms("2016-12-31T23:59:60Z"), Ok(next_day));
        assert_eq!(
            parse_timestamp_ms("2016-12-31T23:59:60.250Z"),
            Ok(next_day + 250)
        );
        assert_eq!(
            parse_timestamp_ms("2017-01-01T08:59:60.250+09:00"),
            Ok(next_day + 250)
        );
        assert_eq!(
            parse_timestamp_ms("2016-12-31T23:59:59.999Z"),
            Ok(next_day - 1)
        );
        // Second 60 anywhere else is no leap second.
        for text in [
            "2016-12-31T12:34:60Z",
            "2016-12-31T23:59:60+09:00",
            "2016-12-31T23:58:60Z",
        ] {
            assert_eq!(
                parse_timestamp_ms(text),
                Err(TimestampError::FieldOutOfRange { text: text.into() }),
                "{text}"
            );
        }
    }

    #[test]
    fn out_of_range_fields_are_named() {
        for text in [
            "2025-13-01T00:00:00Z",
            "2025-00-01T00:00:00Z",
            "2025-02-30T00:00:00Z",
            "2025-11-32T00:00:00Z",
            "2025-11-22T25:00:00Z",
            "2025-11-22T24:00:00Z",
            "2025-11-22T23:60:00Z",
            "2025-11-22T23:00:61Z",
            "2025-11-22T05:33:20+24:00",
        ] {
            let err = parse_timestamp_ms(text).expect_err(text);
            assert_eq!(
                err,
                TimestampError::FieldOutOfRange { text: text.into() },
                "{text}"
            );
            assert!(err.to_string().contains("month 01-12"), "{err}");
        }
    }

    #[test]
    fn missing_offsets_are_refused_by_name() {
        for text in [
            "2025-11-22T05:33:20",
            "2025-11-22T05:33:20.123",
            "2025-11-22 05:33:20",
        ] {
            assert_eq!(
                parse_timestamp_ms(text),
                Err(TimestampError::NoOffset { text: text.into() }),
                "{text}"
            );
        }
    }

    #[test]
    fn other_text_is_invalid() {
        for text in [
            "",
            "yesterday",
            "10000-01-01T00:00:00Z",
            "-0001-01-01T00:00:00Z",
            "+12025-01-01T00:00:00Z",
            "2025-11-22",
            "2025-11-22T05:33Z",
            "2025-11-22T05:33:20.Z",
            "2025-11-22T05:33:20+0200",
            "2025-11-22T05:33:20+02",
            "2025-11-22T05:33:20Z trailing",
            "1.5",
            "12e3",
            "-",
        ] {
            let err = parse_timestamp_ms(text).expect_err(text);
            assert!(
                matches!(err, TimestampError::Invalid { .. }),
                "{text}: {err:?}"
            );
            assert!(err.to_string().contains(&format!("`{text}`")), "{err}");
        }
    }
}
