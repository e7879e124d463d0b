//! Where learning meets the score: per request, a model's capability term
//! comes from the learned predictor (ramped in as its outcomes accumulate)
//! and pays for the model's expected cost at the caller's willingness to
//! pay. Live performance and penalties still apply on top, in the scorer.

use std::sync::Arc;

use crate::errors::ZetaError;
use crate::learned::{check_settings, OutcomePredictor, SparseFeatures};
use crate::scoring::MAX_CAPABILITY;

/// Complexity bands of the learned categories.
const BANDS: [&str; 3] = ["low", "mid", "high"];

/// Task type x complexity band: the category a live request is counted in
/// (`"code/high"`), for the predictor's prior and its category features.
pub fn category_of(task: &str, complexity: f64) -> String {
    let band = if complexity < 1.0 / 3.0 {
        BANDS[0]
    } else if complexity < 2.0 / 3.0 {
        BANDS[1]
    } else {
        BANDS[2]
    };
    format!("{task}/{band}")
}

/// A request as the learned predictor sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnedRequest {
    pub features: SparseFeatures,
    pub category: String,
}

impl LearnedRequest {
    /// The request as learned when it is of a structural `kind` (an index
    /// of [`crate::verdicts::KINDS`]; 0, plain, is the request itself): the
    /// kind is one more category feature and qualifies the category
    /// (`code/high/json`), so the learned router tells a model's JSON-mode
    /// or tool answers apart from its plain ones.
    pub fn of_kind(&self, kind: usize) -> Option<Self> {
        let name = crate::verdicts::KINDS.get(kind).filter(|_| kind != 0)?;
        let mut features = self.features.clone();
        let index = crate::learned::category_index(&format!("kind:{name}"));
        if !features.indices.contains(&index) {
            // Before the bias, which stays last.
            let at = features.indices.len().saturating_sub(1);
            features.indices.insert(at, index);
            features.values.insert(at, 1.0);
        }
        Some(Self {
            features,
            category: format!("{}/{name}", self.category),
        })
    }
}

/// What the router knows of a request beyond its task and complexity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestView {
    /// Present when learning is on and the request's text was known.
    pub learned: Option<Arc<LearnedRequest>>,
    /// Estimated prompt tokens (for the cost term).
    pub prompt_tokens: f64,
    /// Features the request needs (bits of [`crate::request_kinds::FEATURES`]):
    /// models that cannot serve one of them are no candidates.
    pub needs: u32,
    /// Its prompt prefix's block hashes and its session, when a model's
    /// replica policy weighs them (`cache_aware`).
    pub affinity: Option<Arc<crate::prefix::Affinity>>,
}

/// The learned capability term's settings.
pub struct Learning {
    /// Rows in router model order.
    pub predictor: Arc<OutcomePredictor>,
    /// Outcomes of a model before its learned capability fully replaces the
    /// configured one (linear ramp from 0).
    pub min_outcomes: u64,
    /// Share of routed requests sent to a random other candidate, so every
    /// model keeps being seen (bandit feedback).
    pub explore: f64,
    /// Learn from recorded outcomes too (a success, a context too long, a
    /// caller's `record` verdict), not only from quality verdicts (`feedback`).
    pub learn_from_outcomes: bool,
    /// How much each verdict source's word counts ([`crate::verdicts::SOURCES`] order).
    pub source_weights: [f64; crate::verdicts::SOURCES.len()],
}

/// The learned router's settings, before it has a predictor: the defaults
/// live here (the configuration reads them from the bindings' type).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LearningSettings {
    pub min_outcomes: u64,
    pub explore: f64,
    pub learn_from_outcomes: bool,
    pub source_weights: [f64; crate::verdicts::SOURCES.len()],
    pub params: crate::learned::PredictorParams,
}

impl Default for LearningSettings {
    /// 50 outcomes to a full ramp, 2 % exploration, quality verdicts only.
    fn default() -> Self {
        Self {
            min_outcomes: 50,
            explore: 0.02,
            learn_from_outcomes: false,
            source_weights: crate::verdicts::DEFAULT_WEIGHTS,
            params: crate::learned::PredictorParams::default(),
        }
    }
}

impl LearningSettings {
    /// Checks every setting.
    pub fn validate(&self) -> Result<(), ZetaError> {
        if self.min_outcomes == 0 {
            return Err(ZetaError::InvalidConfig {
                field: "learning.min_outcomes",
                expected: ">= 1",
                value: "0".to_owned(),
            });
        }
        check_explore(self.explore)?;
        crate::verdicts::check_weights(&self.source_weights)?;
        self.params.validate()
    }

    /// The learned capability term over `models` (a fresh predictor).
    pub fn learning(&self, models: Vec<String>) -> Result<Learning, ZetaError> {
        self.validate()?;
        Ok(Learning {
            predictor: Arc::new(crate::learned::OutcomePredictor::new(models, self.params)?),
            min_outcomes: self.min_outcomes,
            explore: self.explore,
            learn_from_outcomes: self.learn_from_outcomes,
            source_weights: self.source_weights,
        })
    }
}

fn check_explore(explore: f64) -> Result<(), ZetaError> {
    if !(explore.is_finite() && (0.0..=0.5).contains(&explore)) {
        return Err(ZetaError::InvalidConfig {
            field: "learning.explore",
            expected: "finite and in [0, 0.5]",
            value: crate::errors::float_repr(explore),
        });
    }
    Ok(())
}

impl Learning {
    pub fn validate(&self) -> Result<(), ZetaError> {
        check_explore(self.explore)?;
        crate::verdicts::check_weights(&self.source_weights)
    }

    /// Every model's learned capability for `request`,
    /// `100 * utility / (1 + prior_weight)`, with how far it replaces the
    /// configured one (the share of `min_outcomes` learned so far).
    pub fn capabilities(&self, request: &LearnedRequest) -> Vec<(f64, f64)> {
        let mut predictions = Vec::new();
        self.predictor
            .predict_all(&request.features, &mut predictions);
        let weight = self.predictor.params().prior_weight;
        predictions
            .iter()
            .enumerate()
            .map(|(m, p)| {
                let seen = self.predictor.outcomes_seen(m);
                let ramp = (seen as f64 / self.min_outcomes.max(1) as f64).min(1.0);
                let prior = self.predictor.prior_one(Some(&request.category), m);
                let utility = (p + weight * prior) / (1.0 + weight);
                (MAX_CAPABILITY * utility.clamp(0.0, 1.0), ramp)
            })
            .collect()
    }

    /// The capability of model `m` for `request` alone (see [`Self::capabilities`]).
    pub fn capability(&self, m: usize, configured: f64, request: &LearnedRequest) -> f64 {
        self.capabilities(request)
            .get(m)
            .map_or(configured, |&(learned, ramp)| {
                crate::scoring::blend_learned(configured, learned, ramp)
            })
    }
}

/// The cost/quality knob: a model's expected cost for a request, in
/// capability points, at the caller's willingness to pay.
pub struct CostKnob {
    /// Per router model, dollars per 1,000 tokens.
    pub cost_per_1k_tokens: Vec<f64>,
    /// Dollars the caller would pay for one more successful answer: a
    /// request costing that much loses the full capability scale.
    pub willingness_to_pay: f64,
    /// Completion tokens assumed per request (prompt tokens are estimated).
    pub expected_completion_tokens: f64,
}

impl CostKnob {
    pub fn validate(&self) -> Result<(), ZetaError> {
        check_settings(&[
            ("willingness_to_pay", self.willingness_to_pay, false),
            (
                "expected_completion_tokens",
                self.expected_completion_tokens,
                true,
            ),
        ])?;
        if let Some(bad) = self
            .cost_per_1k_tokens
            .iter()
            .find(|c| !(c.is_finite() && **c >= 0.0))
        {
            return Err(ZetaError::InvalidConfig {
                field: "cost_per_1k_tokens",
                expected: "finite and >= 0",
                value: crate::errors::float_repr(*bad),
            });
        }
        Ok(())
    }

    /// Capability points model `m` gives up for its expected cost.
    pub fn penalty(&self, m: usize, prompt_tokens: f64) -> f64 {
        let price = self.cost_per_1k_tokens.get(m).copied().unwrap_or(0.0);
        let dollars = price * (prompt_tokens + self.expected_completion_tokens) / 1000.0;
        MAX_CAPABILITY * dollars / self.willingness_to_pay
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learned::{features, PredictorParams};

    #[test]
    fn a_kind_is_one_more_category_feature_before_the_bias() {
        let plain = LearnedRequest {
            features: features("give me the answer", &["chat/low"]),
            category: "chat/low".into(),
        };
        assert!(plain.of_kind(0).is_none());
        let json = plain.of_kind(1).unwrap_or_else(|| unreachable!());
        assert_eq!(json.category, "chat/low/json");
        assert_eq!(
            json.features.indices.len(),
            plain.features.indices.len() + 1
        );
        assert_eq!(json.features.indices.last(), plain.features.indices.last());
        assert!(json
            .features
            .indices
            .contains(&crate::learned::category_index("kind:json")));
        let tools = plain.of_kind(2).unwrap_or_else(|| unreachable!());
        assert_eq!(tools.category, "chat/low/tools");
        assert_ne!(tools.features, json.features);
        // The indices alone rebuild the same values (as the outcome log keeps them).
        assert_eq!(
            crate::learned::features_from_indices(json.features.indices.clone()),
            json.features
        );
        assert!(plain.of_kind(9).is_none());
    }

    #[test]
    fn categories_band_complexity() {
        assert_eq!(category_of("code", 0.1), "code/low");
        assert_eq!(category_of("code", 0.5), "code/mid");
        assert_eq!(category_of("chat", 0.9), "chat/high");
    }

    #[test]
    fn learned_capability_ramps_in() {
        let predictor = Arc::new(
            OutcomePredictor::new(vec!["a".into()], PredictorParams::default())
                .unwrap_or_else(|e| unreachable!("{e}")),
        );
        let learning = Learning {
            predictor: Arc::clone(&predictor),
            min_outcomes: 10,
            explore: 0.0,
            learn_from_outcomes: false,
            source_weights: crate::verdicts::DEFAULT_WEIGHTS,
        };
        let request = LearnedRequest {
            features: features("hello", &["chat/low"]),
            category: "chat/low".into(),
        };
        assert_eq!(learning.capability(0, 80.0, &request), 80.0);
        for _ in 0..5 {
            predictor
                .update(&request.features, &[(0, false)], Some("chat/low"), None)
                .unwrap_or_else(|e| unreachable!("{e}"));
        }
        let half = learning.capability(0, 80.0, &request);
        for _ in 0..5 {
            predictor
                .update(&request.features, &[(0, false)], Some("chat/low"), None)
                .unwrap_or_else(|e| unreachable!("{e}"));
        }
        let full = learning.capability(0, 80.0, &request);
        assert!(full < half && half < 80.0, "{full} {half}");
        assert!(
            full < 40.0,
            "a model failing every time is no longer capable: {full}"
        );
    }

    #[test]
    fn cost_penalty_scales_with_tokens_and_willingness() {
        let knob = CostKnob {
            cost_per_1k_tokens: vec![0.0, 0.01],
            willingness_to_pay: 0.01,
            expected_completion_tokens: 500.0,
        };
        assert_eq!(knob.penalty(0, 500.0), 0.0);
        assert!((knob.penalty(1, 500.0) - 100.0).abs() < 1e-9);
        assert!((knob.penalty(1, 0.0) - 50.0).abs() < 1e-9);
        let bad = CostKnob {
            willingness_to_pay: 0.0,
            ..knob
        };
        assert!(bad.validate().is_err());
    }
}
