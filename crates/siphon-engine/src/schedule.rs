//! When a pipeline runs next under `siphon run` without `--once`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use siphon_core::{Error, Result, Schedule};

/// The pause after a continuous pass that found nothing to do.
const IDLE_PAUSE: Duration = Duration::from_secs(1);

/// Checks that a schedule can be followed (cron lines are parsed here).
pub fn validate_schedule(schedule: &Schedule) -> Result<()> {
    if let Schedule::Cron(line) = schedule {
        line.parse::<croner::Cron>()
            .map_err(|e| Error::config(format!("`{line}` is not a valid cron line")).source(e))?;
    }
    Ok(())
}

/// How long to wait, at `now`, before the next pass of a pipeline whose last pass
/// started at `started` and did (or did not) find work.
pub fn next_delay(
    schedule: &Schedule,
    started: DateTime<Utc>,
    now: DateTime<Utc>,
    found_work: bool,
) -> Result<Duration> {
    Ok(match schedule {
        Schedule::Continuous if found_work => Duration::ZERO,
        Schedule::Continuous => IDLE_PAUSE,
        Schedule::Every(every) => {
            let elapsed = (now - started).to_std().unwrap_or_default();
            every.saturating_sub(elapsed)
        }
        Schedule::Cron(line) => {
            let cron: croner::Cron = line.parse().map_err(|e| {
                Error::config(format!("`{line}` is not a valid cron line")).source(e)
            })?;
            let next = cron
                .find_next_occurrence(&now, false)
                .map_err(|e| Error::config(format!("`{line}` never fires")).source(e))?;
            (next - now).to_std().unwrap_or_default()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn delays_follow_the_schedule() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap();
        let every = Schedule::Every(Duration::from_secs(30));
        let now = t0 + chrono::Duration::seconds(10);
        assert_eq!(
            next_delay(&every, t0, now, true).unwrap(),
            Duration::from_secs(20)
        );
        let late = t0 + chrono::Duration::seconds(45);
        assert_eq!(next_delay(&every, t0, late, true).unwrap(), Duration::ZERO);
        assert_eq!(
            next_delay(&Schedule::Continuous, t0, now, true).unwrap(),
            Duration::ZERO
        );
        assert_eq!(
            next_delay(&Schedule::Continuous, t0, now, false).unwrap(),
            IDLE_PAUSE
        );
        let cron = Schedule::Cron("*/5 * * * *".into());
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 10, 3, 0).unwrap();
        assert_eq!(
            next_delay(&cron, at, at, false).unwrap(),
            Duration::from_secs(120)
        );
        assert!(validate_schedule(&Schedule::Cron("61 * * * *".into())).is_err());
    }
}
