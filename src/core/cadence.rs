//! When media and validation are due. A run shows something within seconds of its start: before
//! a cadence's first multiple, samples, reconstructions and validation also come at the steps
//! 1, 2, 5, 10, 20, 50, 100, ... (a 1-2-5 sequence), then every `every` steps. The early points
//! are at most three per decade below the cadence, so a long run's files stay bounded.

/// Why something is due at a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// A multiple of the cadence.
    Regular,
    /// An early point before the cadence's first multiple.
    Early,
}

/// Whether something with cadence `every` (0 = never) is due after `step` steps.
#[must_use]
pub fn due(step: u64, every: u64) -> Option<Due> {
    if every == 0 || step == 0 {
        None
    } else if step.is_multiple_of(every) {
        Some(Due::Regular)
    } else if step < every && is_early_point(step) {
        Some(Due::Early)
    } else {
        None
    }
}

/// 1, 2, 5, 10, 20, 50, 100, ...
fn is_early_point(step: u64) -> bool {
    let mut decade = 1u64;
    while decade <= step {
        if [1u64, 2, 5]
            .iter()
            .any(|m| m.checked_mul(decade) == Some(step))
        {
            return true;
        }
        let Some(next) = decade.checked_mul(10) else {
            return false;
        };
        decade = next;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(every: u64, until: u64) -> Vec<u64> {
        (0..=until).filter(|s| due(*s, every).is_some()).collect()
    }

    #[test]
    fn dense_early_then_every_n() {
        assert_eq!(
            points(100, 450),
            vec![1, 2, 5, 10, 20, 50, 100, 200, 300, 400]
        );
        assert_eq!(due(100, 100), Some(Due::Regular));
        assert_eq!(due(50, 100), Some(Due::Early));
        assert_eq!(points(10, 35), vec![1, 2, 5, 10, 20, 30]);
        assert_eq!(points(1, 4), vec![1, 2, 3, 4]);
        assert!(points(0, 1000).is_empty(), "0 turns it off");
    }

    #[test]
    fn early_points_stay_bounded_on_long_cadences() {
        // Three per decade below the cadence, whatever the run's length.
        assert_eq!(points(1_000_000, 1_000_000).len(), 3 * 6 + 1);
        assert_eq!(due(u64::MAX - 1, u64::MAX), None);
    }
}
