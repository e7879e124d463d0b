//! The scorer's configuration: plain values, validated once when built.

use crate::errors::{float_repr, ZetaError};

/// How much each part of the blend weighs, the thresholds that trigger the
/// penalties, and how hard the penalties bite. Build it with [`AdaptiveConfig::new`]
/// or [`AdaptiveConfig::default`]; a built value is always valid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveConfig {
    /// Weight of the capability score (0..100) in the blend.
    pub capability_weight: f64,
    /// Weight of the success rate (scaled to 0..100) in the blend.
    pub success_rate_weight: f64,
    /// Weight of the latency score (0..100) in the blend.
    pub latency_weight: f64,
    /// Below this success rate (0..1) the low-reliability penalty applies.
    pub min_acceptable_success_rate: f64,
    /// Above this mean latency the high-latency penalty applies; twice this
    /// latency scores 0 on the latency scale.
    pub max_acceptable_latency_ms: f64,
    /// Fewer requests than this and the score is the capability alone.
    pub min_requests_for_performance: u64,
    /// Factor applied when the success rate is below the threshold.
    pub low_success_rate_penalty: f64,
    /// Factor applied when the latency is above the threshold.
    pub high_latency_penalty: f64,
}

/// The weights must sum to 1 within this tolerance: it lets people write
/// 0.33/0.33/0.34 while still catching a forgotten or doubled weight.
pub const WEIGHT_SUM_TOLERANCE: f64 = 0.01;

impl Default for AdaptiveConfig {
    fn default() -> Self {
        Self {
            capability_weight: 0.60,
            success_rate_weight: 0.25,
            latency_weight: 0.15,
            min_acceptable_success_rate: 0.90,
            max_acceptable_latency_ms: 500.0,
            min_requests_for_performance: 10,
            low_success_rate_penalty: 0.5,
            high_latency_penalty: 0.8,
        }
    }
}

impl AdaptiveConfig {
    /// Builds a configuration and validates every field.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        capability_weight: f64,
        success_rate_weight: f64,
        latency_weight: f64,
        min_acceptable_success_rate: f64,
        max_acceptable_latency_ms: f64,
        min_requests_for_performance: u64,
        low_success_rate_penalty: f64,
        high_latency_penalty: f64,
    ) -> Result<Self, ZetaError> {
        let config = Self {
            capability_weight,
            success_rate_weight,
            latency_weight,
            min_acceptable_success_rate,
            max_acceptable_latency_ms,
            min_requests_for_performance,
            low_success_rate_penalty,
            high_latency_penalty,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks every field; the first bad one is reported with its value.
    pub fn validate(&self) -> Result<(), ZetaError> {
        for (field, weight) in [
            ("capability_weight", self.capability_weight),
            ("success_rate_weight", self.success_rate_weight),
            ("latency_weight", self.latency_weight),
        ] {
            if !(weight.is_finite() && weight >= 0.0) {
                return Err(invalid(field, "finite and >= 0", weight));
            }
        }
        let sum = self.capability_weight + self.success_rate_weight + self.latency_weight;
        if (sum - 1.0).abs() > WEIGHT_SUM_TOLERANCE {
            return Err(ZetaError::InvalidConfig {
                field: "capability_weight + success_rate_weight + latency_weight",
                expected: "1.0 within 0.01",
                value: float_repr(sum),
            });
        }
        let rate = self.min_acceptable_success_rate;
        if !(rate > 0.0 && rate <= 1.0) {
            return Err(invalid("min_acceptable_success_rate", "in (0, 1]", rate));
        }
        let latency = self.max_acceptable_latency_ms;
        if !(latency.is_finite() && latency > 0.0) {
            return Err(invalid(
                "max_acceptable_latency_ms",
                "finite and > 0",
                latency,
            ));
        }
        if self.min_requests_for_performance == 0 {
            return Err(ZetaError::InvalidConfig {
                field: "min_requests_for_performance",
                expected: "an integer >= 1",
                value: "0".to_owned(),
            });
        }
        for (field, factor) in [
            ("low_success_rate_penalty", self.low_success_rate_penalty),
            ("high_latency_penalty", self.high_latency_penalty),
        ] {
            if !(factor > 0.0 && factor <= 1.0) {
                return Err(invalid(field, "in (0, 1]", factor));
            }
        }
        Ok(())
    }
}

fn invalid(field: &'static str, expected: &'static str, value: f64) -> ZetaError {
    ZetaError::InvalidConfig {
        field,
        expected,
        value: float_repr(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_matches_the_specification() {
        let config = AdaptiveConfig::default();
        assert!(config.validate().is_ok());
        assert_eq!(config.capability_weight, 0.60);
        assert_eq!(config.min_requests_for_performance, 10);
        assert_eq!(config.high_latency_penalty, 0.8);
    }

    #[test]
    fn weights_must_sum_to_one_within_tolerance() {
        let ok = AdaptiveConfig {
            capability_weight: 0.605,
            ..Default::default()
        };
        assert!(ok.validate().is_ok());
        let bad = AdaptiveConfig {
            capability_weight: 0.7,
            ..Default::default()
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("1.0 within 0.01"), "{err}");
        assert!(err.contains("got 1.09"), "{err}");
    }

    #[test]
    fn nan_inf_and_negative_values_are_rejected_with_field_names() {
        let cases = [
            AdaptiveConfig {
                latency_weight: f64::NAN,
                ..Default::default()
            },
            AdaptiveConfig {
                success_rate_weight: -0.1,
                ..Default::default()
            },
            AdaptiveConfig {
                max_acceptable_latency_ms: f64::INFINITY,
                ..Default::default()
            },
            AdaptiveConfig {
                max_acceptable_latency_ms: 0.0,
                ..Default::default()
            },
            AdaptiveConfig {
                min_acceptable_success_rate: 0.0,
                ..Default::default()
            },
            AdaptiveConfig {
                min_acceptable_success_rate: 1.5,
                ..Default::default()
            },
            AdaptiveConfig {
                min_requests_for_performance: 0,
                ..Default::default()
            },
            AdaptiveConfig {
                low_success_rate_penalty: 0.0,
                ..Default::default()
            },
            AdaptiveConfig {
                high_latency_penalty: f64::NAN,
                ..Default::default()
            },
        ];
        let fields = [
            "latency_weight",
            "success_rate_weight",
            "max_acceptable_latency_ms",
            "max_acceptable_latency_ms",
            "min_acceptable_success_rate",
            "min_acceptable_success_rate",
            "min_requests_for_performance",
            "low_success_rate_penalty",
            "high_latency_penalty",
        ];
        for (config, field) in cases.iter().zip(fields) {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.starts_with(field), "{err} should name {field}");
        }
    }
}
