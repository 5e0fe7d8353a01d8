//! Numbers as a person reads them: a few significant digits, engineering notation (exponents
//! that are multiples of three) for small and large values, no trailing zeros, and axis ticks
//! on a 1-2-5 ladder. Full values stay in the data: hovers and CSV show them unrounded.

/// Below this magnitude (and at or above [`LARGE`]) a value is written in engineering notation.
pub const SMALL: f64 = 1e-3;
/// See [`SMALL`].
pub const LARGE: f64 = 1e5;

/// `x` with four significant digits: `0.007582`, `2.611`, `20`, `300e-6`, `12.35e6`.
#[must_use]
pub fn num(x: f64) -> String {
    sig(x, 4)
}

/// `x` with `digits` significant digits (at least one), trailing zeros dropped; engineering
/// notation outside [[`SMALL`], [`LARGE`]). Whole numbers below [`LARGE`] keep every digit
/// (`12345`, not `12350`).
#[must_use]
pub fn sig(x: f64, digits: u32) -> String {
    if let Some(s) = special(x) {
        return s;
    }
    let digits = digits.max(1) as i32;
    let a = x.abs();
    if (SMALL..LARGE).contains(&a) {
        let e = a.log10().floor() as i32;
        let decimals = (digits - 1 - e).max(0) as usize;
        let text = trim(&format!("{x:.decimals$}"));
        // Rounding may carry into the range's top (99999.7 -> 100000): still plain.
        return text;
    }
    eng(x, digits)
}

/// `x` in engineering notation with `digits` significant digits: `7.582e-3`, `300e-6`.
#[must_use]
pub fn eng(x: f64, digits: i32) -> String {
    if let Some(s) = special(x) {
        return s;
    }
    let (mut e3, mut mantissa) = split3(x);
    let mut decimals = (digits - 1 - mantissa.abs().log10().floor() as i32).max(0) as usize;
    let mut text = format!("{mantissa:.decimals$}");
    // 999.96e-6 rounds to 1000e-6: carry into the next power of a thousand.
    if text.trim_start_matches('-').starts_with("1000") {
        e3 += 3;
        mantissa /= 1000.0;
        decimals = (digits - 1).max(0) as usize;
        text = format!("{mantissa:.decimals$}");
    }
    exp_text(&trim(&text), e3)
}

/// An axis tick at `value` on a grid of spacing `step`: as many decimals as the step needs
/// (`12.5` on a 0.5 grid, `20` on a 10 grid), engineering notation for small or large ticks
/// (`300e-6` on a 1e-4 grid), `0` at zero.
#[must_use]
pub fn tick(value: f64, step: f64) -> String {
    if let Some(s) = special(value) {
        return s;
    }
    let step = step.abs();
    if step == 0.0 || !step.is_finite() {
        return num(value);
    }
    if value.abs() < step * 1e-6 {
        return "0".into();
    }
    let step_e = step.log10().floor() as i32;
    let a = value.abs();
    if (SMALL..LARGE).contains(&a) && step >= SMALL {
        let decimals = (-step_e).max(0) as usize;
        return trim(&format!("{value:.decimals$}"));
    }
    let (e3, mantissa) = split3(value);
    let decimals = (e3 - step_e).max(0) as usize;
    exp_text(&trim(&format!("{mantissa:.decimals$}")), e3)
}

/// Three grid spacings for a plot axis on the 1-2-5 ladder, the finest at least `min_step`
/// (the value span of the smallest gap the plot allows); each spacing divides the next, so
/// ticks of one thickness never fall between those of another. `whole` keeps every spacing a
/// whole number (a step axis has no half steps).
#[must_use]
pub fn grid_steps(min_step: f64, whole: bool) -> [f64; 3] {
    let min_step = if whole {
        min_step.abs().max(1.0)
    } else {
        min_step.abs()
    };
    if !min_step.is_finite() || min_step == 0.0 {
        return [1.0, 10.0, 100.0];
    }
    let mut p = 10f64.powf(min_step.log10().floor());
    let mut m = 1.0;
    // Climb the ladder (1, 2, 5, 10, ...) to the first rung at or above min_step.
    while m * p < min_step * (1.0 - 1e-9) {
        (m, p) = next_rung(m, p);
    }
    let first = m * p;
    // The next spacing a multiple of it (1 -> 2, 2 -> 10, 5 -> 10), the coarsest ten times
    // it (a multiple of both): its ticks are at least ten grid gaps apart, room for a label.
    let (m2, p2) = if m == 2.0 {
        (1.0, p * 10.0)
    } else {
        next_rung(m, p)
    };
    [first, m2 * p2, 10.0 * first]
}

/// A field is drawn on a log axis when it is positive and spans more than two decades.
#[must_use]
pub fn wants_log(lo: f64, hi: f64) -> bool {
    lo > 0.0 && hi.is_finite() && hi / lo > 100.0 * (1.0 + 1e-9)
}

fn next_rung(m: f64, p: f64) -> (f64, f64) {
    match m as u8 {
        1 => (2.0, p),
        2 => (5.0, p),
        _ => (1.0, p * 10.0),
    }
}

/// `(e3, mantissa)` with `x = mantissa * 10^e3`, `e3` a multiple of three and the mantissa's
/// magnitude in [1, 1000).
fn split3(x: f64) -> (i32, f64) {
    let e = x.abs().log10().floor() as i32;
    let e3 = e.div_euclid(3) * 3;
    (e3, x / 10f64.powi(e3))
}

fn exp_text(mantissa: &str, e3: i32) -> String {
    if e3 == 0 {
        mantissa.to_string()
    } else {
        format!("{mantissa}e{e3}")
    }
}

fn special(x: f64) -> Option<String> {
    if x == 0.0 {
        Some("0".into())
    } else if x.is_nan() {
        Some("NaN".into())
    } else if x.is_infinite() {
        Some(if x > 0.0 { "inf" } else { "-inf" }.into())
    } else {
        None
    }
}

/// Drops a decimal part's trailing zeros (and the point when nothing is left after it).
fn trim(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_significant_digits_and_no_trailing_zeros() {
        assert_eq!(num(0.007_581_937_400_841_383), "0.007582");
        assert_eq!(num(2.611_05), "2.611");
        assert_eq!(num(0.697_97), "0.698");
        assert_eq!(num(20.0), "20");
        assert_eq!(num(15.149_56), "15.15");
        assert_eq!(num(12_345.0), "12345");
        assert_eq!(num(-3.5), "-3.5");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(f64::NAN), "NaN");
        assert_eq!(sig(1.0 / 3.0, 3), "0.333");
    }

    #[test]
    fn engineering_notation_for_small_and_large_values() {
        assert_eq!(num(3e-4), "300e-6");
        assert_eq!(num(1e-5), "10e-6");
        assert_eq!(num(0.000_123_456), "123.5e-6");
        assert_eq!(num(2.5e-7), "250e-9");
        assert_eq!(num(12_345_678.0), "12.35e6");
        assert_eq!(num(-4.2e-8), "-42e-9");
        assert_eq!(num(1e5), "100e3");
        // Rounding carries into the next power of a thousand.
        assert_eq!(num(0.000_999_996), "1e-3");
        for x in [3.7e-9, 4.4e-4, 6.1e7, -2.2e10] {
            let back: f64 = num(x).parse().unwrap();
            assert!((back - x).abs() <= 1e-3 * x.abs(), "{x} -> {}", num(x));
            let e: i32 = num(x).split('e').nth(1).unwrap().parse().unwrap();
            assert_eq!(e % 3, 0, "{x}: exponent a multiple of three");
        }
    }

    #[test]
    fn ticks_carry_the_digits_of_their_grid_only() {
        assert_eq!(tick(20.0, 10.0), "20");
        assert_eq!(tick(10.0, 1.0), "10");
        assert_eq!(tick(12.5, 0.5), "12.5");
        assert_eq!(tick(0.7, 0.1), "0.7");
        assert_eq!(tick(0.698, 0.001), "0.698");
        assert_eq!(tick(1e-17, 0.5), "0", "rounding noise at zero");
        assert_eq!(tick(3e-4, 1e-4), "300e-6");
        assert_eq!(tick(1.5e-4, 5e-5), "150e-6");
        assert_eq!(tick(250_000.0, 50_000.0), "250e3");
        assert_eq!(tick(1_000.0, 200.0), "1000");
    }

    #[test]
    fn grid_steps_climb_a_1_2_5_ladder_and_nest() {
        assert_eq!(grid_steps(0.28, false), [0.5, 1.0, 5.0]);
        assert_eq!(grid_steps(0.5, false), [0.5, 1.0, 5.0]);
        assert_eq!(grid_steps(27.8, true), [50.0, 100.0, 500.0]);
        assert_eq!(grid_steps(1.3, false), [2.0, 10.0, 20.0]);
        assert_eq!(grid_steps(7.0, false), [10.0, 20.0, 100.0]);
        assert_eq!(grid_steps(0.2, true), [1.0, 2.0, 10.0], "no half steps");
        for min in [3e-5, 0.013, 0.7, 4.0, 333.0, 9e6] {
            let s = grid_steps(min, false);
            assert!(
                s[0] >= min * (1.0 - 1e-9) && s[0] < min * 2.5 + 1e-12,
                "{min}: {s:?}"
            );
            for w in s.windows(2) {
                let ratio = w[1] / w[0];
                assert!(
                    (ratio - ratio.round()).abs() < 1e-9,
                    "{min}: {s:?} must nest"
                );
            }
        }
    }

    #[test]
    fn log_is_for_positive_fields_over_two_decades() {
        assert!(wants_log(1e-5, 1e-2));
        assert!(!wants_log(1e-4, 1e-2), "exactly two decades stays linear");
        assert!(!wants_log(0.0, 1.0));
        assert!(!wants_log(-1.0, 1000.0));
    }
}
