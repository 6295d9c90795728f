/*!
UTC timestamps in the one format the hub writes: `YYYY-MM-DDTHH:MM:SSZ`.

The reference compares stored timestamps as strings inside SQL
(`expires_at >= ?`, `last_seen < ?`), so every value we write must have
second precision and a literal `Z`. Fractional seconds are truncated, never
rounded. Readers accept any RFC 3339 value (fractions, offsets, a space
instead of `T`), because a database may hold values written elsewhere.

This is a small hand-written civil-calendar conversion (Howard Hinnant's
`days_from_civil` / `civil_from_days`), valid for years 0000 through 9999.
*/

use std::time::{SystemTime, UNIX_EPOCH};

/// Largest Unix second we format (9999-12-31T23:59:59Z).
pub const MAX_SECS: i64 = 253_402_300_799;

/// Seconds since the Unix epoch, truncated toward the past.
pub fn now_secs() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs_f64().ceil() as i64),
    }
}

/// The current time in the wire format.
pub fn now() -> String {
    format(now_secs())
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`, clamped to years 0..=9999.
pub fn format(secs: i64) -> String {
    let secs = secs.clamp(-62_167_219_200, MAX_SECS);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Parses an RFC 3339 timestamp (also accepting a space separator and a
/// missing offset, read as UTC) into Unix seconds, truncating fractions.
pub fn parse(s: &str) -> Option<i64> {
    let s = s.trim().as_bytes();
    if s.len() < 19 {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(range)?;
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if s[4] != b'-' || s[7] != b'-' || !matches!(s[10], b'T' | b't' | b' ') {
        return None;
    }
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if s[13] != b':' || s[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 60
    {
        return None;
    }
    let mut rest = &s[19..];
    if let Some((b'.', tail)) = rest.split_first() {
        let digits = tail.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        rest = &tail[digits..];
    }
    let offset = match rest {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), oh1, oh2, b':', om1, om2] => {
            let digit = |c: &u8| c.is_ascii_digit().then(|| i64::from(c - b'0'));
            let oh = digit(oh1)? * 10 + digit(oh2)?;
            let om = digit(om1)? * 10 + digit(om2)?;
            let off = oh * 3600 + om * 60;
            if *sign == b'+' { off } else { -off }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some(days * 86_400 + h * 3600 + mi * 60 + se.min(59) - offset)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format(0), "1970-01-01T00:00:00Z");
        assert_eq!(format(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format(1_795_331_594), "2026-11-22T07:13:14Z");
        assert_eq!(format(MAX_SECS), "9999-12-31T23:59:59Z");
        assert_eq!(format(MAX_SECS + 100), "9999-12-31T23:59:59Z");
        assert_eq!(format(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn parse_round_trips_every_day_of_a_leap_cycle() {
        let start = 946_684_800; // 2000-01-01
        for day in 0..(366 * 4 + 2) {
            let secs = start + day * 86_400 + 3_723;
            assert_eq!(parse(&format(secs)), Some(secs), "day {day}");
        }
    }

    #[test]
    fn parse_accepts_rfc3339_variants() {
        let base = parse("2026-11-22T07:13:14Z").unwrap();
        assert_eq!(parse("2026-11-22T07:13:14.999999Z"), Some(base));
        assert_eq!(parse("2026-11-22 07:13:14"), Some(base));
        assert_eq!(parse("2026-11-22T07:13:14+00:00"), Some(base));
        assert_eq!(parse("2026-11-22T09:13:14+02:00"), Some(base));
        assert_eq!(parse("2026-11-22T05:13:14.5-02:00"), Some(base));
    }

    #[test]
    fn parse_rejects_garbage() {
        for bad in [
            "",
            "2026-11-22",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T07:13:14.Z",
            "2026-11-22T07:13:14+0000",
            "2026-11-22X07:13:14Z",
            "20a6-11-22T07:13:14Z",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn wire_strings_compare_like_instants() {
        let a = format(1_000_000_000);
        let b = format(1_000_000_001);
        assert!(a < b);
        assert!(format(now_secs()).ends_with('Z'));
    }
}
