//! RFC 3339 (UTC) parsing and printing, and civil-date arithmetic, without a clock.

use std::fmt;

use super::types::UnixSeconds;

const SECONDS_PER_DAY: i64 = 86_400;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month 1..=12, day 1..=31) of a day number since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

/// Seconds of a valid civil date-time, `None` when any part is out of range.
pub fn from_civil(
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
) -> Option<UnixSeconds> {
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(UnixSeconds(
        days * SECONDS_PER_DAY
            + i64::from(hour) * 3600
            + i64::from(minute) * 60
            + i64::from(second),
    ))
}

/// (year, month) of an instant, UTC.
pub fn year_month(at: UnixSeconds) -> (i64, u32) {
    let (year, month, _) = civil_from_days(at.0.div_euclid(SECONDS_PER_DAY));
    (year, month)
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0')))
}

/// Parses RFC 3339 in UTC: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+00:00)`. The fraction is dropped
/// (the ledger counts whole seconds). Other offsets are refused: the contract says UTC.
/// The result is within [`UnixSeconds::MIN`, `UnixSeconds::MAX`].
pub fn parse_rfc3339_utc(text: &str) -> Option<UnixSeconds> {
    let b = text.as_bytes();
    if b.len() < 20 || b.len() > 40 {
        return None;
    }
    if b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let year = i64::from(digits(&b[0..4])?);
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    let mut rest = &b[19..];
    if rest.first() == Some(&b'.') {
        let fraction_len = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if fraction_len == 0 || fraction_len > 9 {
            return None;
        }
        rest = &rest[1 + fraction_len..];
    }
    if rest != b"Z" && rest != b"z" && rest != b"+00:00" {
        return None;
    }
    let at = from_civil(year, month, day, hour, minute, second)?;
    if at < UnixSeconds::MIN || at > UnixSeconds::MAX {
        return None;
    }
    Some(at)
}

/// Writes `YYYY-MM-DDTHH:MM:SSZ`.
pub fn write_rfc3339(f: &mut impl fmt::Write, at: UnixSeconds) -> fmt::Result {
    let days = at.0.div_euclid(SECONDS_PER_DAY);
    let second_of_day = at.0.rem_euclid(SECONDS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    write!(
        f,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        (second_of_day / 60) % 60,
        second_of_day % 60
    )
}

/// The instant DE 7 (MMDDhhmmss, UTC, no year) names, taking the year that puts it closest to
/// `now`. Every replica infers the same instant as long as their `now`s are within a few months
/// of the transmission, which is what makes it usable in hold ids' companions (retention).
pub fn transmission_instant(mmddhhmmss: u64, now: UnixSeconds) -> Option<UnixSeconds> {
    if mmddhhmmss > 1_231_235_959 {
        return None;
    }
    let month = (mmddhhmmss / 100_000_000) as u32;
    let day = ((mmddhhmmss / 1_000_000) % 100) as u32;
    let hour = ((mmddhhmmss / 10_000) % 100) as u32;
    let minute = ((mmddhhmmss / 100) % 100) as u32;
    let second = (mmddhhmmss % 100) as u32;
    let (now_year, _) = year_month(now);
    let mut best: Option<UnixSeconds> = None;
    for year in [now_year - 1, now_year, now_year + 1] {
        if let Some(candidate) = from_civil(year, month, day, hour, minute, second) {
            let closer = match best {
                None => true,
                Some(b) => (candidate.0 - now.0).abs() < (b.0 - now.0).abs(),
            };
            if closer {
                best = Some(candidate);
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_roundtrip() {
        let at = parse_rfc3339_utc("2026-11-22T10:15:00Z").unwrap();
        assert_eq!(at.0, 1_795_342_500);
        assert_eq!(at.to_string(), "2026-11-22T10:15:00Z");
        assert_eq!(parse_rfc3339_utc("2026-11-22T10:15:00.123+00:00"), Some(at));
        assert_eq!(parse_rfc3339_utc("2026-02-29T10:15:00Z"), None);
        assert_eq!(parse_rfc3339_utc("2026-11-22T10:15:00+01:00"), None);
        assert_eq!(parse_rfc3339_utc("2026-11-22 10:15:00Z"), None);
        assert_eq!(parse_rfc3339_utc("1969-11-22T10:15:00Z"), None);
    }

    #[test]
    fn transmission_year_is_closest_to_now() {
        let now = parse_rfc3339_utc("2027-01-01T00:10:00Z").unwrap();
        let t = transmission_instant(1_231_235_959, now).unwrap();
        assert_eq!(t.to_string(), "2026-12-31T23:59:59Z");
        assert_eq!(transmission_instant(1_332_000_000, now), None);
        assert_eq!(transmission_instant(230_120_000, now), None);
    }
}
