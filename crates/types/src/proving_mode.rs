//! Which batches the rollup offers to the proof market (`--proving-mode cluster|network|mixed`
//! with `--market-ratio` for `mixed`). The choice depends on the batch number alone, so it is
//! the same after a restart and on every replica.

use crate::BatchNumber;

/// Parts of a million: the unit of [`ProvingMode::Mixed`]'s share.
const MILLION: u64 = 1_000_000;

/// Where batches are proven.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProvingMode {
    /// Only the own provers: nothing is offered.
    Cluster,
    /// Every batch is offered to the market (and still falls back to the own provers when a
    /// network does not deliver).
    Network,
    /// A share of the batches, in parts per million, spread evenly over batch numbers.
    Mixed { share_ppm: u32 },
}

/// A `--proving-mode`/`--market-ratio` pair that does not make sense.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ModeError {
    #[error("unknown proving mode {0:?}: use cluster, network or mixed")]
    UnknownMode(String),
    #[error("--market-ratio is only for --proving-mode mixed (got mode {0})")]
    RatioWithoutMixed(&'static str),
    #[error("--proving-mode mixed needs --market-ratio (the share of batches offered, 0..1)")]
    MissingRatio,
    #[error("--market-ratio {0} is not a share between 0 and 1")]
    BadRatio(f64),
}

impl ProvingMode {
    /// From the flags: `mode` is `cluster`, `network` or `mixed`; `ratio` (only and always
    /// with `mixed`) the share of batches offered, in `0..=1`, kept to a millionth.
    pub fn from_flags(mode: &str, ratio: Option<f64>) -> Result<ProvingMode, ModeError> {
        let mode = match mode {
            "cluster" => ProvingMode::Cluster,
            "network" => ProvingMode::Network,
            "mixed" => {
                let ratio = ratio.ok_or(ModeError::MissingRatio)?;
                if !(0.0..=1.0).contains(&ratio) {
                    return Err(ModeError::BadRatio(ratio));
                }
                let share_ppm = (ratio * MILLION as f64).round() as u32;
                return Ok(ProvingMode::Mixed { share_ppm });
            }
            other => return Err(ModeError::UnknownMode(other.to_owned())),
        };
        match ratio {
            Some(_) => Err(ModeError::RatioWithoutMixed(mode.name())),
            None => Ok(mode),
        }
    }

    /// The flag's value.
    pub fn name(&self) -> &'static str {
        match self {
            ProvingMode::Cluster => "cluster",
            ProvingMode::Network => "network",
            ProvingMode::Mixed { .. } => "mixed",
        }
    }

    /// Whether `batch` goes to the market. `Mixed`: a running share, `batch` is offered when
    /// `floor((batch + 1) * share)` passes `floor(batch * share)`, so that any run of `n`
    /// consecutive batches has `n * share` offered, give or take one.
    pub fn offers(&self, batch: BatchNumber) -> bool {
        match *self {
            ProvingMode::Cluster => false,
            ProvingMode::Network => true,
            ProvingMode::Mixed { share_ppm } => {
                let share = u128::from(share_ppm.min(MILLION as u32));
                let upto = |n: u128| n * share / u128::from(MILLION);
                let b = u128::from(batch);
                upto(b + 1) > upto(b)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn flags_parse_and_bad_ones_say_why() {
        assert_eq!(
            ProvingMode::from_flags("cluster", None),
            Ok(ProvingMode::Cluster)
        );
        assert_eq!(
            ProvingMode::from_flags("network", None),
            Ok(ProvingMode::Network)
        );
        assert_eq!(
            ProvingMode::from_flags("mixed", Some(0.25)),
            Ok(ProvingMode::Mixed { share_ppm: 250_000 })
        );
        assert_eq!(
            ProvingMode::from_flags("gpu", None),
            Err(ModeError::UnknownMode("gpu".into()))
        );
        assert_eq!(
            ProvingMode::from_flags("network", Some(0.5)),
            Err(ModeError::RatioWithoutMixed("network"))
        );
        assert_eq!(
            ProvingMode::from_flags("mixed", None),
            Err(ModeError::MissingRatio)
        );
        for bad in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                ProvingMode::from_flags("mixed", Some(bad)),
                Err(ModeError::BadRatio(_))
            ));
        }
    }

    #[test]
    fn cluster_offers_nothing_network_everything_and_mixed_a_quarter() {
        for b in 0..100 {
            assert!(!ProvingMode::Cluster.offers(b));
            assert!(ProvingMode::Network.offers(b));
        }
        let quarter = ProvingMode::Mixed { share_ppm: 250_000 };
        let offered: Vec<u64> = (1..=12).filter(|b| quarter.offers(*b)).collect();
        assert_eq!(offered, vec![3, 7, 11]);
        assert!(!ProvingMode::Mixed { share_ppm: 0 }.offers(5));
        assert!((0..50).all(|b| {
            ProvingMode::Mixed {
                share_ppm: 1_000_000,
            }
            .offers(b)
        }));
    }

    proptest! {
        /// Any window of consecutive batches gets its share, give or take one.
        #[test]
        fn mixed_offers_its_share_of_any_window(
            share_ppm in 0u32..=1_000_000,
            first in 0u64..u64::MAX / 2,
            n in 1u64..2_000,
        ) {
            let mode = ProvingMode::Mixed { share_ppm };
            let offered = (first..first + n).filter(|b| mode.offers(*b)).count() as f64;
            let want = n as f64 * f64::from(share_ppm) / 1e6;
            prop_assert!((offered - want).abs() <= 1.0, "{offered} offered, want {want}");
        }
    }
}
