//! The time a text line starts with: the server's timestamp (its clock is
//! the reference, PROTOCOL.md section 3) in the terminal's local time.

/// Whether a text is one missed while away: the server delivers those right
/// after the register and before anything newer (PROTOCOL.md section 7),
/// and it stamped them before it answered the register. Both times are the
/// server's, so a client without a real-time clock still tells them apart.
pub fn is_missed(timestamp_ms: u64, registered_at_ms: u64) -> bool {
    timestamp_ms < registered_at_ms
}

/// `18:02` for a text that arrived live; `2026-12-06 18:02` for one
/// missed while away, which may be from another day. `offset_s` is the
/// local time's offset from UTC at that moment.
pub fn stamp(timestamp_ms: u64, missed: bool, offset_s: i64) -> String {
    let local_s = (timestamp_ms / 1000) as i64 + offset_s;
    let (days, secs) = (local_s.div_euclid(86_400), local_s.rem_euclid(86_400));
    let (h, m) = (secs / 3600, secs % 3600 / 60);
    if !missed {
        return format!("{h:02}:{m:02}");
    }
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}")
}

/// The local time's offset from UTC at `timestamp_ms`, in seconds (daylight
/// saving time included), as the C library knows it from `TZ` or
/// /etc/localtime; 0 (UTC) when it cannot tell.
#[cfg(unix)]
pub fn local_offset_s(timestamp_ms: u64) -> i64 {
    let Ok(t) = libc::time_t::try_from(timestamp_ms / 1000) else {
        return 0;
    };
    // SAFETY: `tm` is a plain C struct for which all zeroes is a valid
    // value; localtime_r only reads `t` and writes `tm`, both owned here,
    // and is thread-safe (unlike localtime).
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let done = unsafe { libc::localtime_r(&t, &mut tm) };
    if done.is_null() {
        0
    } else {
        // c_long: 32 bits on a 32-bit Raspberry Pi OS, so a widening cast.
        tm.tm_gmtoff as i64
    }
}

/// Without the C library's time zones, times are shown in UTC.
#[cfg(not(unix))]
pub fn local_offset_s(_timestamp_ms: u64) -> i64 {
    0
}

/// (year, month, day) of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, exact for the proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
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

    /// 2026-12-07 19:24:29.500 UTC.
    const T: u64 = 1_796_671_469_500;

    #[test]
    fn a_live_text_shows_the_time_and_a_missed_one_the_date_too() {
        assert_eq!(stamp(T, false, 0), "19:24");
        assert_eq!(stamp(T, true, 0), "2026-12-07 19:24");
    }

    #[test]
    fn the_time_is_local() {
        assert_eq!(stamp(T, true, 3600), "2026-12-07 20:24");
        assert_eq!(
            stamp(T, true, 5 * 3600),
            "2026-12-08 00:24",
            "past midnight"
        );
        assert_eq!(stamp(T, true, -(19 * 3600 + 30 * 60)), "2026-12-06 23:54");
    }

    #[test]
    fn dates_follow_the_calendar() {
        assert_eq!(stamp(0, true, 0), "1970-01-01 00:00");
        assert_eq!(
            stamp(951_782_400_000, true, 0),
            "2000-02-29 00:00",
            "leap day"
        );
        assert_eq!(
            stamp(4_107_542_399_000, true, 0),
            "2100-02-28 23:59",
            "no leap day"
        );
        assert_eq!(stamp(1_767_225_599_000, true, 0), "2025-12-31 23:59");
    }

    #[test]
    fn texts_stamped_before_the_register_were_missed() {
        assert!(is_missed(T - 1, T));
        assert!(!is_missed(T, T));
        assert!(!is_missed(T + 1, T));
    }

    #[cfg(unix)]
    #[test]
    fn the_local_offset_is_within_a_day() {
        assert!(local_offset_s(T).abs() < 86_400);
    }
}
