//! Length distributions for prompt and output tokens: `N` (fixed), `uniform:MIN,MAX`,
//! `normal:MEAN,STDDEV[,MIN,MAX]`, or `dataset` (take it from the dataset's records).

use rand::Rng;
use rand_distr::{Distribution, Normal};
use serde::Serialize;

use crate::error::{Result, WorkloadError};

/// A distribution of token counts; samples are whole numbers >= 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LengthDist {
    /// Always `value`.
    Fixed { value: u32 },
    /// Uniform over the integers `min..=max`.
    Uniform { min: u32, max: u32 },
    /// Normal(mean, stddev) rounded to the nearest integer, redrawn until inside `min..=max`
    /// (a truncated normal, not a clamped one: no pile-up at the bounds).
    Normal {
        mean: f64,
        stddev: f64,
        min: u32,
        max: u32,
    },
    /// Taken from the dataset record (its output-length field, or the length of its answer).
    Dataset,
}

impl LengthDist {
    /// Parse a flag value; `flag` names the flag in errors.
    pub fn parse(flag: &str, s: &str) -> Result<Self> {
        let s = s.trim();
        let bad = |msg: &str| WorkloadError::flag(flag, s, msg);
        let int = |v: &str| -> Result<u32> {
            v.trim()
                .parse::<u32>()
                .ok()
                .filter(|&n| n >= 1)
                .ok_or_else(|| bad(&format!("`{}` is not a whole number >= 1", v.trim())))
        };
        let float = |v: &str| -> Result<f64> {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| bad(&format!("`{}` is not a number", v.trim())))
        };
        let (kind, rest) = match s.split_once(':') {
            Some((k, r)) => (k.trim(), r),
            None if s == "dataset" => return Ok(Self::Dataset),
            None => ("fixed", s),
        };
        let parts: Vec<&str> = rest.split(',').collect();
        match kind {
            "fixed" if parts.len() == 1 => Ok(Self::Fixed {
                value: int(parts[0])?,
            }),
            "uniform" if parts.len() == 2 => {
                let (min, max) = (int(parts[0])?, int(parts[1])?);
                if min > max {
                    return Err(bad("uniform:MIN,MAX needs MIN <= MAX"));
                }
                Ok(Self::Uniform { min, max })
            }
            "normal" if parts.len() == 2 || parts.len() == 4 => {
                let mean = float(parts[0])?;
                let stddev = float(parts[1])?;
                if mean < 1.0 || stddev < 0.0 {
                    return Err(bad("normal needs MEAN >= 1 and STDDEV >= 0"));
                }
                let (min, max) = if parts.len() == 4 {
                    (int(parts[2])?, int(parts[3])?)
                } else {
                    // Default bounds: mean +- 4 stddev, at least 1.
                    let lo = (mean - 4.0 * stddev).round().max(1.0) as u32;
                    let hi = (mean + 4.0 * stddev).round().max(1.0) as u32;
                    (lo, hi.max(lo))
                };
                if min > max
                    || (mean + 4.0 * stddev) < min as f64
                    || (mean - 4.0 * stddev) > max as f64
                {
                    return Err(bad(
                        "normal:MEAN,STDDEV,MIN,MAX needs MIN <= MAX and the range to overlap MEAN +- 4 STDDEV",
                    ));
                }
                Ok(Self::Normal {
                    mean,
                    stddev,
                    min,
                    max,
                })
            }
            _ => Err(bad(
                "expected N, fixed:N, uniform:MIN,MAX, normal:MEAN,STDDEV[,MIN,MAX] or dataset",
            )),
        }
    }

    /// Draw one length. `Dataset` has no length of its own and returns `None`.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<u32> {
        match *self {
            Self::Fixed { value } => Some(value),
            Self::Uniform { min, max } => Some(rng.random_range(min..=max)),
            Self::Normal {
                mean,
                stddev,
                min,
                max,
            } => {
                if stddev == 0.0 {
                    return Some((mean.round() as u32).clamp(min, max));
                }
                let normal = Normal::new(mean, stddev).ok()?;
                // Parse checked that [min, max] overlaps mean +- 4 stddev, so acceptance is at
                // least ~3e-5 per draw; bound the loop anyway.
                for _ in 0..1_000_000 {
                    let x = normal.sample(rng).round();
                    if x >= min as f64 && x <= max as f64 {
                        return Some(x as u32);
                    }
                }
                Some((mean.round() as u32).clamp(min, max))
            }
            Self::Dataset => None,
        }
    }

    /// The smallest value the distribution can produce.
    pub fn min(&self) -> Option<u32> {
        match *self {
            Self::Fixed { value } => Some(value),
            Self::Uniform { min, .. } | Self::Normal { min, .. } => Some(min),
            Self::Dataset => None,
        }
    }

    /// The largest value the distribution can produce.
    pub fn max(&self) -> Option<u32> {
        match *self {
            Self::Fixed { value } => Some(value),
            Self::Uniform { max, .. } | Self::Normal { max, .. } => Some(max),
            Self::Dataset => None,
        }
    }
}

impl std::fmt::Display for LengthDist {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed { value } => write!(f, "{value}"),
            Self::Uniform { min, max } => write!(f, "uniform:{min},{max}"),
            Self::Normal {
                mean,
                stddev,
                min,
                max,
            } => write!(f, "normal:{mean},{stddev},{min},{max}"),
            Self::Dataset => f.write_str("dataset"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn parses_every_form_and_rejects_bad_ones() {
        assert_eq!(
            LengthDist::parse("--prompt-tokens", "256").expect("fixed"),
            LengthDist::Fixed { value: 256 }
        );
        assert_eq!(
            LengthDist::parse("--prompt-tokens", "uniform:100,200").expect("uniform"),
            LengthDist::Uniform { min: 100, max: 200 }
        );
        assert_eq!(
            LengthDist::parse("--prompt-tokens", "normal:512,128,64,1024").expect("normal"),
            LengthDist::Normal {
                mean: 512.0,
                stddev: 128.0,
                min: 64,
                max: 1024
            }
        );
        assert_eq!(
            LengthDist::parse("--output-tokens", "dataset").expect("dataset"),
            LengthDist::Dataset
        );
        for bad in [
            "0",
            "-5",
            "abc",
            "uniform:200,100",
            "uniform:5",
            "normal:10",
            "poisson:3",
        ] {
            let err = LengthDist::parse("--prompt-tokens", bad).expect_err(bad);
            assert!(err.to_string().contains("--prompt-tokens"), "{err}");
        }
    }

    #[test]
    fn samples_stay_in_range_and_are_seeded() {
        let d = LengthDist::parse("x", "normal:512,128,400,600").expect("normal");
        let mut a = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut b = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let xs: Vec<u32> = (0..5000).map(|_| d.sample(&mut a).expect("len")).collect();
        let ys: Vec<u32> = (0..5000).map(|_| d.sample(&mut b).expect("len")).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|&x| (400..=600).contains(&x)));
        let mean = xs.iter().map(|&x| x as f64).sum::<f64>() / xs.len() as f64;
        assert!((mean - 500.0).abs() < 10.0, "mean {mean}");
        let u = LengthDist::parse("x", "uniform:10,12").expect("uniform");
        let mut seen = [false; 3];
        for _ in 0..200 {
            let v = u.sample(&mut a).expect("len");
            seen[(v - 10) as usize] = true;
        }
        assert_eq!(seen, [true; 3]);
    }
}
