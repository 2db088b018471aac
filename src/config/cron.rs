//! Cron expressions: the one parser configuration shared by validation and the scheduler
//! (six fields, seconds first, UTC), and [`Schedule::expected_interval`].
//!
//! It does not run anything on a schedule; that is [`crate::schedule`].

use std::time::Duration;

use super::Schedule;

/// Parses a cron expression: six fields, seconds first; when both day-of-month and day-of-week
/// are restricted, a day must match both. The scheduler parses with this too, so it runs
/// exactly what validation accepted.
pub fn cron(expr: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr)
        .map_err(|e| e.to_string())
}

/// Parses a cron expression exactly as the scheduler will (six fields, seconds first).
pub fn parse_cron(expr: &str) -> Result<(), String> {
    cron(expr).map(|_| ())
}

impl Schedule {
    /// How long a run may be apart from the next: the interval, or for a cron schedule the
    /// longest gap among its next 64 runs. Published so alerts can call a check stale
    /// without a hand-kept table of intervals.
    pub fn expected_interval(&self) -> Duration {
        match self {
            Schedule::Interval(d) => *d,
            Schedule::Cron(expr) => {
                let Ok(c) = cron(expr) else {
                    return Duration::ZERO;
                };
                let mut at = chrono::Utc::now();
                let mut longest = Duration::ZERO;
                for _ in 0..64 {
                    let Ok(next) = c.find_next_occurrence(&at, false) else {
                        break;
                    };
                    if let Ok(gap) = (next - at).to_std() {
                        longest = longest.max(gap);
                    }
                    at = next;
                }
                longest
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_intervals() {
        assert_eq!(
            Schedule::Interval(Duration::from_secs(90)).expected_interval(),
            Duration::from_secs(90)
        );
        assert_eq!(
            Schedule::Cron("0 5 * * * *".into()).expected_interval(),
            Duration::from_secs(3600)
        );
        // Weekdays at 06:00: the weekend gap is the longest.
        assert_eq!(
            Schedule::Cron("0 0 6 * * Mon-Fri".into()).expected_interval(),
            Duration::from_secs(3 * 86400)
        );
    }
}
