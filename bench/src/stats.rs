//! Order statistics over samples: percentiles of one run, and the median across
//! the interleaved rounds of a benchmark.

use std::time::Duration;

/// The `p`-th percentile (0 to 100) of `sorted`, by nearest rank.
///
/// # Panics
///
/// If `sorted` is empty.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use edgeloop_bench::stats::percentile;
///
/// let v: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
/// assert_eq!(percentile(&v, 50.0), Duration::from_micros(50));
/// assert_eq!(percentile(&v, 99.0), Duration::from_micros(99));
/// assert_eq!(percentile(&v, 100.0), Duration::from_micros(100));
/// ```
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    assert!(!sorted.is_empty(), "percentile of no samples");
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of `values` (the mean of the two middle ones for an even count).
///
/// # Panics
///
/// If `values` is empty.
///
/// # Examples
///
/// ```
/// use edgeloop_bench::stats::median;
///
/// assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
/// assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
/// ```
pub fn median(values: &[f64]) -> f64 {
    assert!(!values.is_empty(), "median of no values");
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// `a / b` as a table cell ("0.42x"), or "-" when `b` is zero.
pub fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 {
        "-".to_owned()
    } else {
        format!("{:.2}x", a / b)
    }
}

/// `value` with one decimal, as a table cell; values that round to zero print as
/// "0.0", never "-0.0".
///
/// # Examples
///
/// ```
/// use edgeloop_bench::stats::one_decimal;
///
/// assert_eq!(one_decimal(-0.01), "0.0");
/// assert_eq!(one_decimal(12.34), "12.3");
/// ```
pub fn one_decimal(value: f64) -> String {
    let value = if value.abs() < 0.05 { 0.0 } else { value };
    format!("{value:.1}")
}
