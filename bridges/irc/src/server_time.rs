//! The IRCv3 `server-time` tag: when the server received a message.
//!
//! With `server-time`, every message carries `@time=2011-10-19T16:40:51.620Z`.
//! The bridge forwards it as the XMPP delay timestamp, which matters most for
//! history playback (ZNC, soju, CHATHISTORY) where "now" would be wrong.
//!
//! The format is one fixed profile of ISO 8601, so it is parsed by hand rather
//! than with a date crate; [`days_from_civil`] is Howard Hinnant's algorithm.
//! Anything malformed gives `None`, and the caller falls back to "now".

/// Parse a `time` tag value into milliseconds since the Unix epoch (UTC).
///
/// Accepted: `YYYY-MM-DDTHH:MM:SS[.f…]Z`, with 1 to 9 fraction digits
/// (truncated to milliseconds), `T`/`Z` in either case, and, though servers
/// send only `Z`, a numeric offset `±HH:MM` in its place. Rejected: anything
/// else, including out-of-range fields (month 13, 30 February, hour 24,
/// second 60: servers use Unix time, which has no leap seconds), missing
/// zone, extra characters and non-ASCII digits.
pub fn parse(value: &str) -> Option<i64> {
    let b = value.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }

    let mut rest = &b[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&n) {
            return None;
        }
        for i in 0..3 {
            millis = millis * 10
                + fraction
                    .get(i)
                    .filter(|_| i < n)
                    .map_or(0, |c| i64::from(c - b'0'));
        }
        rest = &fraction[n..];
    }

    let offset_seconds = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let hours = digits(&[*h1, *h2])?;
            let minutes = digits(&[*m1, *m2])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 3600 + minutes * 60;
            if *sign == b'-' {
                -offset
            } else {
                offset
            }
        }
        _ => return None,
    };

    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    Some(seconds * 1000 + millis)
}

/// Format milliseconds since the epoch as a `time` tag value
/// (`2011-10-19T16:40:51.620Z`), e.g. for CHATHISTORY `timestamp=` bounds.
/// Years outside 0000–9999 cannot be represented in this format and come out
/// with more digits or a sign, which [`parse`] rejects.
pub fn format(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

/// ASCII digits as a number; `None` if any byte is not a digit.
fn digits(bytes: &[u8]) -> Option<i64> {
    bytes.iter().try_fold(0i64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
    })
}

/// Gregorian leap year.
pub fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Days in `month` (1–12) of `year`.
fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (negative before it).
/// Month 1–12, day 1–31; the date is not validated.
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let mp = (month + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + day - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`]: `(year, month, day)`.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example() {
        // 2011-10-19T16:40:51.620Z, as `date -u -d … +%s%3N` gives it.
        assert_eq!(parse("2011-10-19T16:40:51.620Z"), Some(1_319_042_451_620));
    }

    #[test]
    fn epoch_and_fraction_lengths() {
        assert_eq!(parse("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(parse("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(parse("1970-01-01T00:00:01.25Z"), Some(1250));
        assert_eq!(parse("1970-01-01T00:00:01.999999999Z"), Some(1999));
        assert_eq!(parse("1970-01-01t00:00:01z"), Some(1000));
        assert_eq!(parse("1969-12-31T23:59:59.999Z"), Some(-1));
    }

    #[test]
    fn leap_years() {
        assert!(is_leap_year(2000) && is_leap_year(2024) && is_leap_year(1600));
        assert!(!is_leap_year(1900) && !is_leap_year(2023) && !is_leap_year(2100));
        assert_eq!(parse("2024-02-29T12:00:00Z"), Some(1_709_208_000_000));
        assert_eq!(parse("2000-02-29T00:00:00Z"), Some(951_782_400_000));
        assert_eq!(parse("2023-02-29T00:00:00Z"), None);
        assert_eq!(parse("1900-02-29T00:00:00Z"), None);
        assert_eq!(parse("2100-02-29T00:00:00Z"), None);
        // The day after 28 February in a leap year is the 29th, then 1 March.
        let feb28 = parse("2024-02-28T00:00:00Z").unwrap();
        let mar01 = parse("2024-03-01T00:00:00Z").unwrap();
        assert_eq!(mar01 - feb28, 2 * 86_400_000);
        let feb28 = parse("2023-02-28T00:00:00Z").unwrap();
        let mar01 = parse("2023-03-01T00:00:00Z").unwrap();
        assert_eq!(mar01 - feb28, 86_400_000);
    }

    #[test]
    fn offsets() {
        let utc = parse("2020-06-01T12:00:00Z");
        assert_eq!(parse("2020-06-01T14:00:00+02:00"), utc);
        assert_eq!(parse("2020-06-01T06:30:00-05:30"), utc);
        assert_eq!(parse("2020-06-01T12:00:00.000+00:00"), utc);
        assert_eq!(parse("2020-06-01T12:00:00+24:00"), None);
        assert_eq!(parse("2020-06-01T12:00:00+0200"), None);
    }

    #[test]
    fn malformed() {
        for bad in [
            "",
            "2011-10-19",
            "2011-10-19T16:40:51",
            "2011-10-19T16:40:51.620",
            "2011-10-19 16:40:51Z",
            "2011/10/19T16:40:51Z",
            "2011-10-19T16:40:51.Z",
            "2011-10-19T16:40:51.1234567890Z",
            "2011-10-19T16:40:51,620Z",
            "2011-10-19T16:40:51.620ZZ",
            "2011-10-19T16:40:51.620Z ",
            " 2011-10-19T16:40:51Z",
            "2011-13-19T16:40:51Z",
            "2011-00-19T16:40:51Z",
            "2011-10-00T16:40:51Z",
            "2011-10-32T16:40:51Z",
            "2011-04-31T16:40:51Z",
            "2011-10-19T24:00:00Z",
            "2011-10-19T16:60:51Z",
            "2011-10-19T16:40:60Z",
            "+011-10-19T16:40:51Z",
            "2011-1a-19T16:40:51Z",
            "２０11-10-19T16:40:51Z",
            "2011-10-19T16:40:51.6２Z",
            "20111-10-19T16:40:51Z",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn civil_round_trip_property() {
        // Every day from year 0 to 2400 converts back and forth, consecutively.
        let start = days_from_civil(0, 1, 1);
        let end = days_from_civil(2400, 12, 31);
        let mut expected = (0, 1, 1);
        for days in start..=end {
            let (y, m, d) = civil_from_days(days);
            assert_eq!((y, m, d), expected, "day {days}");
            assert_eq!(days_from_civil(y, m, d), days);
            expected = if d < days_in_month(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn format_round_trip_property() {
        assert_eq!(format(1_319_042_451_620), "2011-10-19T16:40:51.620Z");
        assert_eq!(format(-1), "1969-12-31T23:59:59.999Z");
        let max = parse("9999-12-31T23:59:59.999Z").unwrap();
        let min = parse("0000-01-01T00:00:00.000Z").unwrap();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let ms = min + (x % (max - min + 1) as u64) as i64;
            let text = format(ms);
            assert_eq!(parse(&text), Some(ms), "{text}");
        }
        assert_eq!(parse(&format(max)), Some(max));
        assert_eq!(parse(&format(min)), Some(min));
    }
}
