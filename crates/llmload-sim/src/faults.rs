//! Injected faults, set by flags at start and changed at run time with `POST /admin/faults`.

use serde::{Deserialize, Serialize};

/// The fault configuration. Every fault is off by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Fraction (0-1) of generation requests answered with HTTP 500.
    pub error_rate: f64,
    /// Answer HTTP 429 while the engine's waiting queue holds more than this many requests.
    pub rate_limit_waiting: Option<u64>,
    /// Cut streams (close the connection mid-response) after this many output tokens.
    pub cut_after_tokens: Option<u32>,
    /// Fraction (0-1) of streams that are cut when `cut_after_tokens` is set.
    pub cut_rate: f64,
    /// Stall a stream for this long (milliseconds of simulated time) ...
    pub stall_ms: u64,
    /// ... after this many output tokens ...
    pub stall_after_tokens: u32,
    /// ... in this fraction (0-1) of streams.
    pub stall_rate: f64,
    /// Answer 503 on every endpoint but /metrics for this many seconds (from start, or from
    /// the moment it is set through /admin/faults).
    pub unready_for_s: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            error_rate: 0.0,
            rate_limit_waiting: None,
            cut_after_tokens: None,
            cut_rate: 1.0,
            stall_ms: 0,
            stall_after_tokens: 0,
            stall_rate: 0.0,
            unready_for_s: 0.0,
        }
    }
}

impl Faults {
    /// Checks ranges; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("error_rate", self.error_rate),
            ("cut_rate", self.cut_rate),
            ("stall_rate", self.stall_rate),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!("{name} must be between 0 and 1, got {v}"));
            }
        }
        if !(self.unready_for_s >= 0.0 && self.unready_for_s.is_finite()) {
            return Err(format!(
                "unready_for_s must be >= 0, got {}",
                self.unready_for_s
            ));
        }
        Ok(())
    }

    /// Applies a JSON patch (only the fields present change).
    pub fn patched(&self, patch: &serde_json::Value) -> Result<Faults, String> {
        let mut cur = serde_json::to_value(self).map_err(|e| e.to_string())?;
        let (Some(obj), Some(p)) = (cur.as_object_mut(), patch.as_object()) else {
            return Err("the body must be a JSON object of fault fields".into());
        };
        for (k, v) in p {
            obj.insert(k.clone(), v.clone());
        }
        let f: Faults = serde_json::from_value(cur).map_err(|e| e.to_string())?;
        f.validate()?;
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_changes_only_given_fields_and_validates() {
        let f = Faults::default();
        let g = f.patched(&serde_json::json!({"error_rate": 0.5})).unwrap();
        assert_eq!(g.error_rate, 0.5);
        assert_eq!(g.cut_rate, 1.0);
        assert!(f.patched(&serde_json::json!({"error_rate": 2.0})).is_err());
        assert!(f.patched(&serde_json::json!({"nope": 1})).is_err());
        assert!(f.patched(&serde_json::json!([1])).is_err());
    }
}
