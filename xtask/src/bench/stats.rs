//! Statistics of noisy timings: quantiles, a five-number summary with its spread, and ratios.
//!
//! Boot times under TCG on a shared machine vary by tens of percent from batch to batch, so the
//! bench reports medians (robust to the odd slow boot) and the interquartile range as the spread,
//! never a mean.
//!
//! The one statistics module of xtask: every bench (boot, memory, allocators, schedulers, Xen)
//! takes its medians from here.

use serde::{Deserialize, Serialize};

/// The `q`-quantile (0 ≤ q ≤ 1) of an ascending sample, interpolating linearly between the two
/// nearest ranks (the usual "type 7" definition: the median of an even sample is the mean of
/// the middle two). `None` for an empty sample.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let pos = q.clamp(0.0, 1.0) * last as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}

/// The median of a sample in any order; `None` when it is empty.
pub fn median(samples: &[f64]) -> Option<f64> {
    quantile(&sorted(samples), 0.5)
}

fn sorted(samples: &[f64]) -> Vec<f64> {
    let mut s: Vec<f64> = samples.iter().copied().filter(|x| !x.is_nan()).collect();
    s.sort_by(f64::total_cmp);
    s
}

/// `a / b`, or `None` when `b` is not a positive number (no floor to compare with).
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a.is_finite() && b.is_finite()).then(|| a / b)
}

/// Median, quartiles and extremes of a sample, with the sample itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Median.
    pub median: f64,
    /// First quartile.
    pub p25: f64,
    /// Third quartile.
    pub p75: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// The samples, in the order they were taken.
    pub samples: Vec<f64>,
}

impl Summary {
    /// Summarizes `samples` (NaNs ignored); `None` when nothing is left.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        let s = sorted(samples);
        Some(Summary {
            n: s.len(),
            median: quantile(&s, 0.5)?,
            p25: quantile(&s, 0.25)?,
            p75: quantile(&s, 0.75)?,
            min: *s.first()?,
            max: *s.last()?,
            samples: samples.to_vec(),
        })
    }

    /// The spread: the interquartile range relative to the median (0.1 = the middle half of
    /// the runs lies within a band 10% of the median wide). 0 for a zero median.
    pub fn spread(&self) -> f64 {
        ratio(self.p75 - self.p25, self.median).unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_between_ranks() {
        let s = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&s, 0.0), Some(1.0));
        assert_eq!(quantile(&s, 1.0), Some(4.0));
        assert_eq!(quantile(&s, 0.5), Some(2.5));
        assert_eq!(quantile(&s, 0.25), Some(1.75));
        assert_eq!(quantile(&s, 0.75), Some(3.25));
        assert_eq!(quantile(&[7.0], 0.25), Some(7.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn medians_of_odd_even_and_unsorted_samples() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[5.0]), Some(5.0));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 1.0, 3.0]), Some(2.0));
        // One wild outlier does not move it.
        assert_eq!(median(&[50.0, 51.0, 49.0, 52.0, 900.0]), Some(51.0));
    }

    #[test]
    fn summary_and_spread() {
        let s = Summary::of(&[10.0, 12.0, 11.0, 13.0, 14.0]).expect("non-empty");
        assert_eq!((s.n, s.median, s.min, s.max), (5, 12.0, 10.0, 14.0));
        assert_eq!((s.p25, s.p75), (11.0, 13.0));
        assert!((s.spread() - 2.0 / 12.0).abs() < 1e-12);
        assert_eq!(
            s.samples,
            [10.0, 12.0, 11.0, 13.0, 14.0],
            "kept in run order"
        );
        assert!(Summary::of(&[]).is_none());
        let zero = Summary::of(&[0.0, 0.0]).expect("non-empty");
        assert_eq!(zero.spread(), 0.0);
    }

    #[test]
    fn ratios() {
        assert_eq!(ratio(120.0, 100.0), Some(1.2));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(1.0, -2.0), None);
        assert_eq!(ratio(f64::INFINITY, 2.0), None);
    }
}
