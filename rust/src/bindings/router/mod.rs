//! `RouterCore` and `Decision`: assignment seen from Python (the facade is
//! `zeta_fast.Router`). Every method is a thin translation: names to
//! indices, Python values to the core's types, the core's errors through
//! `ZetaError`; the logic is in `crate::routing`.
//!
//! Size: over 600 lines because PyO3 takes one `#[pymethods]` block per class; the bodies only
//! translate, and the helpers live in decision.rs, settings.rs and status.rs.

mod decision;
mod settings;
mod status;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwapOption;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use self::decision::Names;
pub use self::decision::PyDecision;
use self::settings::{cost_arg, models_arg};
pub use self::settings::{PyLearningSettings, PyModelSettings, PyResilience};
pub use self::status::PyReplicaStatus;
use self::status::{histogram_dict, predictions, range_change, replica_status};
use super::config::adaptive_config_arg;
use super::extract::{
    count, count_u32, flag, number, opt_number, opt_text, or_default, text, texts, type_error, utf8,
};
use super::kinds::kind_arg;
use super::learned::PyOutcomePredictor;
use super::outcome_log::PyOutcomeLogWriter;
use super::profile::{profile_keeping_buckets, profile_text, PyRequestProfile};
use super::prompt_prefix::prompt_prefix;
use super::request_text::request_text;
use super::scorer::PyScoreBreakdown;
use super::tracker::PyPerformanceTracker;
use super::trends::PyTrendWatch;
use crate::errors::{float_repr, Position, ZetaError};
use crate::learned::features_with_words;
use crate::learned_capability::{LearnedRequest, RequestView};
use crate::outcome::OutcomeKind;
use crate::outcome_log::{LoggedOutcome, OutcomeLog};
use crate::policies::model_ordering;
use crate::prefix::Affinity;
use crate::request_kinds::{feature_bit, FEATURES};
use crate::routing::{Decision, Outcome, RoutedModel, RouterCore, Target, Tuning, TASKS};
use crate::scoring::AdaptiveScorer;
use crate::trends::{TrendWatch, DEFAULT_CAPACITY};
use crate::verdicts::{
    check_confidence, check_index, source_index, CHECKS, DEFAULT_CONFIDENCE, EXPLICIT, KINDS,
    SOURCES,
};

/// The bit of `PyDecision::judged` set once its structural check was recorded.
const CHECKED: u32 = 1 << 31;

/// The native router: models, replica slots, tracker and scorer.
#[pyclass(name = "RouterCore", module = "zeta_fast._core", frozen)]
pub struct PyRouterCore {
    inner: Arc<RouterCore>,
    /// Context names; a context's index in the core is 1 + its position.
    contexts: Vec<String>,
    /// Model, replica and task names, interned once and shared with every
    /// decision (which reads them when asked, not when made).
    names: Arc<Names>,
    /// The outcome log every recorded outcome is appended to, when one is
    /// attached (`log_outcomes`): appended here, with no Python call.
    outcome_log: ArcSwapOption<OutcomeLog>,
    /// The Python callables `record` and `feedback` hand each outcome to
    /// (a `Router`'s outcome feed mirrors its subscribers here), so that
    /// `Router.record` is this method itself, with no Python frame. The
    /// flag is read first: without subscribers no lock is taken.
    subscribers: Mutex<Option<Py<PyTuple>>>,
    has_subscribers: AtomicBool,
}

/// `field` must be finite and >= 0.
fn non_negative(field: &'static str, value: f64) -> Result<f64, ZetaError> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(ZetaError::InvalidInput {
            field,
            position: Position::Scalar,
            expected: "finite and >= 0",
            value: float_repr(value),
        })
    }
}

impl PyRouterCore {
    fn model(&self, id: &str) -> PyResult<(usize, &RoutedModel)> {
        let m = self.inner.model_index(id)?;
        let routed = self
            .inner
            .models()
            .get(m)
            .ok_or(ZetaError::ForeignDecision)?;
        Ok((m, routed))
    }

    /// 0 for no context, else 1 + the context's position.
    fn context_index(&self, context: Option<&str>) -> Result<usize, ZetaError> {
        let Some(name) = context else {
            return Ok(0);
        };
        self.contexts
            .iter()
            .position(|c| c == name)
            .map(|index| index + 1)
            .ok_or_else(|| ZetaError::UnknownName {
                field: "context",
                value: name.to_owned(),
                known: if self.contexts.is_empty() {
                    "none configured".to_owned()
                } else {
                    self.contexts.join(", ")
                },
            })
    }

    fn own_decision<'a>(&self, decision: &'a Bound<'_, PyAny>) -> PyResult<&'a PyDecision> {
        let decision = decision
            .cast::<PyDecision>()
            .map_err(|_| type_error("decision", "a Decision from route()", decision))?
            .get();
        if !Arc::ptr_eq(&decision.router, &self.inner) {
            return Err(ZetaError::ForeignDecision.into());
        }
        Ok(decision)
    }

    /// Records a decision at most once: a rejected record (bad input) does
    /// not use it up.
    fn record_once<'a>(
        &self,
        decision: &'a Bound<'_, PyAny>,
        record: impl FnOnce(&RouterCore, &Decision, bool) -> Result<bool, ZetaError>,
    ) -> PyResult<(bool, &'a PyDecision)> {
        let decision = self.own_decision(decision)?;
        if decision.recorded.swap(true, Ordering::AcqRel) {
            return Err(ZetaError::AlreadyRecorded {
                what: "was already recorded (its replica slot is free again)",
            }
            .into());
        }
        // A released decision's slot is free already: its outcome only counts.
        let free_slot = !decision.released.load(Ordering::Acquire);
        let taught = record(&self.inner, &decision.inner, free_slot).map_err(|err| {
            decision.recorded.store(false, Ordering::Release);
            PyErr::from(err)
        })?;
        Ok((taught, decision))
    }

    /// Appends a recorded outcome to the outcome log, when one is attached.
    #[inline]
    fn log(&self, py: Python<'_>, decision: &PyDecision, logged: LoggedOutcome) {
        if let Some(log) = self.outcome_log.load().as_ref() {
            log.append(decision.log_row(py, logged));
        }
    }

    /// Hands a caller's outcome (or verdict) to the Python subscribers, with
    /// the arguments of ``zeta_fast.outcomes.OutcomeSubscriber``: (decision,
    /// kind, latency_ms, learned, ttft_ms, prompt_tokens, completion_tokens,
    /// dispatched, about_replica). A subscriber's error is the caller's.
    fn publish(
        &self,
        decision: &Bound<'_, PyAny>,
        kind: &'static str,
        latency_ms: f64,
        learned: Option<bool>,
        about_replica: bool,
    ) -> PyResult<()> {
        if !self.has_subscribers.load(Ordering::Acquire) {
            return Ok(());
        }
        let py = decision.py();
        let subscribers = match self.subscribers.lock() {
            Ok(held) => held.as_ref().map(|t| t.clone_ref(py)),
            Err(poisoned) => poisoned.into_inner().as_ref().map(|t| t.clone_ref(py)),
        };
        let Some(subscribers) = subscribers else {
            return Ok(());
        };
        for subscriber in subscribers.bind(py).iter() {
            subscriber.call1((
                decision,
                kind,
                latency_ms,
                learned,
                py.None(),
                0_u64,
                0_u64,
                false,
                about_replica,
            ))?;
        }
        Ok(())
    }

    /// The profile of a request, and its learned view when learning is on
    /// (which needs the text itself; found in the request's shape here).
    fn profile_of<'py>(
        &self,
        py: Python<'py>,
        request: Option<&Bound<'py, PyAny>>,
        profile: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyRequestProfile>, Option<Arc<LearnedRequest>>)> {
        if let Some(given) = profile {
            let given = given
                .cast::<PyRequestProfile>()
                .map_err(|_| type_error("profile", "a RequestProfile", given))?;
            return Ok((given.clone(), None));
        }
        let Some(request) = request else {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "route() needs a request or a profile",
            ));
        };
        let learning = self.inner.learning().is_some();
        if let Ok(text) = request.cast::<PyString>() {
            // The common case: a prompt, profiled without copying it.
            let text = utf8(text, "request")?;
            if learning {
                let (profile, learned) = profile_for_learning(text, 1, false)?;
                return Ok((Bound::new(py, profile)?, Some(learned)));
            }
            return Ok((Bound::new(py, profile_text(text)?)?, None));
        }
        let (text, turns, embedding) = request_text(request, None)?;
        if learning {
            let (profile, learned) = profile_for_learning(&text, turns, embedding)?;
            return Ok((Bound::new(py, profile)?, Some(learned)));
        }
        let profile = super::profile::_profile_text(&text, turns, embedding)?;
        Ok((Bound::new(py, profile)?, None))
    }
}

#[pymethods]
impl PyRouterCore {
    /// `models`: `ModelSettings`, in order; `resilience`: `ResilienceSettings`;
    /// `learning`: `LearningSettings` (None: learning off).
    #[new]
    #[pyo3(
        signature = (tracker, models, contexts = None, config = None, policy = None, spread_margin = None, resilience = None, learning = None, cost = None, model_ordering_name = None),
        text_signature = "(tracker, models, contexts=..., config=None, policy='power_of_two', spread_margin=10.0, resilience=None, learning=None, cost=None, model_ordering_name='spread')"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        tracker: &Bound<'_, PyAny>,
        models: &Bound<'_, PyAny>,
        contexts: Option<&Bound<'_, PyAny>>,
        config: Option<&Bound<'_, PyAny>>,
        policy: Option<&Bound<'_, PyAny>>,
        spread_margin: Option<&Bound<'_, PyAny>>,
        resilience: Option<&Bound<'_, PyAny>>,
        learning: Option<&Bound<'_, PyAny>>,
        cost: Option<&Bound<'_, PyAny>>,
        model_ordering_name: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let models = models
            .cast::<PyList>()
            .map_err(|_| type_error("models", "a list of ModelSettings", models))?;
        let contexts = match contexts {
            Some(given) if !given.is_none() => texts(given, "contexts")?,
            _ => Vec::new(),
        };
        let policy = opt_text(policy, "policy")?.unwrap_or("power_of_two");
        let spread_margin = opt_number(spread_margin, "spread_margin")?.unwrap_or(10.0);
        let model_ordering_name =
            opt_text(model_ordering_name, "model_ordering_name")?.unwrap_or("spread");
        let cost = match cost {
            Some(given) if !given.is_none() => Some(
                given
                    .cast::<PyDict>()
                    .map_err(|_| type_error("cost", "a dict", given))?,
            ),
            _ => None,
        };
        let resilience = match resilience {
            None => crate::routing::Resilience::default(),
            Some(given) => {
                given
                    .cast::<PyResilience>()
                    .map_err(|_| type_error("resilience", "a ResilienceSettings", given))?
                    .get()
                    .inner
            }
        };
        let learning = match learning {
            None => None,
            Some(given) => Some(
                given
                    .cast::<PyLearningSettings>()
                    .map_err(|_| type_error("learning", "a LearningSettings", given))?
                    .get()
                    .inner,
            ),
        };
        let tracker = tracker
            .cast::<PyPerformanceTracker>()
            .map_err(|_| type_error("tracker", "a PerformanceTracker", tracker))?;
        let mut inner = RouterCore::new(
            Arc::clone(&tracker.get().inner),
            AdaptiveScorer::new(adaptive_config_arg(config)?)?,
            models_arg(models)?,
            policy,
            model_ordering(model_ordering_name, spread_margin)?,
            resilience,
        )?;
        let ids: Vec<String> = inner.models().iter().map(|m| m.id.to_string()).collect();
        if let Some(learning) = learning {
            inner.set_learning(learning.learning(ids)?)?;
        }
        if let Some(cost) = cost {
            inner.set_cost_knob(cost_arg(cost)?)?;
        }
        let intern = |name: &str| PyString::intern(py, name).unbind();
        let names = Names {
            models: inner.models().iter().map(|m| intern(&m.id)).collect(),
            replicas: inner
                .models()
                .iter()
                .map(|m| m.replica_ids.iter().map(|r| intern(r)).collect())
                .collect(),
            tasks: TASKS.iter().map(|t| intern(t)).collect(),
        };
        Ok(Self {
            inner: Arc::new(inner),
            contexts,
            names: Arc::new(names),
            outcome_log: ArcSwapOption::empty(),
            subscribers: Mutex::new(None),
            has_subscribers: AtomicBool::new(false),
        })
    }

    /// Routes a request (anything `zeta_fast.profile` takes) or a known
    /// profile, in an optional named context, and takes a replica slot that
    /// `record` gives back. Prompt strings are profiled without leaving Rust.
    /// With `model`, the request goes to that model (a caller's choice).
    /// `needs`: the request features it needs, as a bit mask (see
    /// ``zeta_fast.request_features``); models that cannot serve them are skipped.
    /// `replica` (with `model`): take that replica when it can take the
    /// request (it holds the conversation's state), else the policy chooses.
    /// `session`: the conversation's name (an `x-session-id`, the `user`
    /// field), which `cache_aware` keeps on one replica.
    #[pyo3(
        signature = (request = None, *, context = None, profile = None, model = None, needs = None, replica = None, session = None),
        text_signature = "(self, request=None, *, context=None, profile=None, model=None, needs=0, replica=None, session=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn route(
        &self,
        py: Python<'_>,
        request: Option<&Bound<'_, PyAny>>,
        context: Option<&Bound<'_, PyAny>>,
        profile: Option<&Bound<'_, PyAny>>,
        model: Option<&Bound<'_, PyAny>>,
        needs: Option<&Bound<'_, PyAny>>,
        replica: Option<&Bound<'_, PyAny>>,
        session: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyDecision> {
        // Taken as Python objects so a bad one is named; an exact str or int
        // costs what PyO3's own conversion does.
        let context = opt_text(context, "context")?;
        let model = opt_text(model, "model")?;
        let needs = or_default(needs, 0, "needs", count_u32)?;
        let replica = opt_text(replica, "replica")?;
        let context_index = self.context_index(context)?;
        let (profile, mut learned) = self.profile_of(py, request, profile)?;
        if needs != 0 {
            // JSON-mode and tool requests are learned as their own kind.
            if let Some(kinded) = learned
                .as_ref()
                .and_then(|l| l.of_kind(crate::verdicts::kind_of(needs)))
            {
                learned = Some(Arc::new(kinded));
            }
        }
        let target = {
            let inner = &profile.get().inner;
            Target {
                task: inner.task.unwrap_or(4),
                complexity: inner.complexity,
                context: context_index,
            }
        };
        let session = opt_text(session, "session")?;
        // Only a prefix-aware policy pays for rendering and hashing.
        let affinity = match self.inner.affinity_block_bytes() {
            Some(block_bytes) => {
                let (prompt, opening) = match request {
                    Some(request) => prompt_prefix(request)?,
                    None => (Vec::new(), None),
                };
                Some(Arc::new(Affinity::new(
                    &prompt,
                    session.map(str::as_bytes),
                    opening,
                    block_bytes,
                )))
            }
            None => None,
        };
        let view = RequestView {
            learned,
            prompt_tokens: profile.get().inner.features.token_estimate as f64,
            needs,
            affinity,
        };
        let decision = match model {
            None => self
                .inner
                .route(target.task, target.complexity, target.context, view)?,
            Some(name) => {
                let (index, prefer) = match replica {
                    Some(replica) => {
                        let (m, r) = self.inner.replica_index(name, replica)?;
                        (m, Some(r))
                    }
                    None => (self.inner.model_index(name)?, None),
                };
                self.inner.route_to(index, target, view, prefer)?
            }
        };
        self.wrap(
            decision,
            context.map(str::to_owned),
            Some(profile.into_any().unbind()),
        )
    }

    /// Where to send a request again after `decision` failed: another
    /// replica of its model first (none used by the decisions in `tried`),
    /// then its fallback chain, then the other candidates by score. With
    /// `needs_longer_context`, only models with a longer context window.
    #[pyo3(
        signature = (decision, tried = None, needs_longer_context = None),
        text_signature = "(self, decision, tried=..., needs_longer_context=False)"
    )]
    fn reroute(
        &self,
        py: Python<'_>,
        decision: &Bound<'_, PyAny>,
        tried: Option<&Bound<'_, PyAny>>,
        needs_longer_context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyDecision> {
        let needs_longer_context =
            or_default(needs_longer_context, false, "needs_longer_context", flag)?;
        let failed = self.own_decision(decision)?;
        let mut pairs = vec![(failed.inner.model, failed.inner.replica)];
        if let Some(tried) = tried.filter(|t| !t.is_none()) {
            let items = tried
                .try_iter()
                .map_err(|_| type_error("tried", "a list of Decision", tried))?;
            for (index, item) in items.enumerate() {
                let item = item?;
                let other = item
                    .cast::<PyDecision>()
                    .map_err(|_| type_error(&format!("tried[{index}]"), "a Decision", &item))?
                    .get();
                pairs.push((other.inner.model, other.inner.replica));
            }
        }
        let next = self
            .inner
            .reroute(&failed.inner, &pairs, needs_longer_context)?;
        self.wrap(
            next,
            failed.context.clone(),
            failed.profile.as_ref().map(|p| p.clone_ref(py)),
        )
    }

    /// Records how a dispatched request ended (`kind`: an `OutcomeKind` or
    /// its name), with its time to first token and token counts;
    /// frees the replica slot. True when the learned router learned it.
    /// ``request_id``: the request the attempt served (a gateway's
    /// ``x-request-id``), kept in the outcome log. ``cached_tokens``: of the
    /// prompt tokens, those the engine reused from its cache (llama.cpp's
    /// ``timings.cache_n``), which scores the ``cache_aware`` policy.
    #[pyo3(
        signature = (decision, kind, latency_ms, *, ttft_ms = None, prompt_tokens = None, completion_tokens = None, request_id = None, cached_tokens = None),
        text_signature = "(self, decision, kind, latency_ms, *, ttft_ms=None, prompt_tokens=0, completion_tokens=0, request_id=None, cached_tokens=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn record_outcome(
        &self,
        decision: &Bound<'_, PyAny>,
        kind: &Bound<'_, PyAny>,
        latency_ms: &Bound<'_, PyAny>,
        ttft_ms: Option<&Bound<'_, PyAny>>,
        prompt_tokens: Option<&Bound<'_, PyAny>>,
        completion_tokens: Option<&Bound<'_, PyAny>>,
        request_id: Option<String>,
        cached_tokens: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let kind = kind_arg(kind)?;
        let latency_ms = number(latency_ms, "latency_ms")?;
        let ttft_ms = opt_number(ttft_ms, "ttft_ms")?;
        let prompt_tokens = or_default(prompt_tokens, 0, "prompt_tokens", count)?;
        let completion_tokens = or_default(completion_tokens, 0, "completion_tokens", count)?;
        let cached_tokens = match cached_tokens.filter(|c| !c.is_none()) {
            Some(value) => Some(count(value, "cached_tokens")?),
            None => None,
        };
        let outcome = Outcome {
            kind,
            latency_ms,
            ttft_ms,
            prompt_tokens,
            completion_tokens,
            cached_tokens,
        };
        let (taught, recorded) = self.record_once(decision, |inner, d, free_slot| {
            inner.record_attempt(d, outcome, free_slot, request_id.as_deref())
        })?;
        let logged = LoggedOutcome {
            outcome: kind.name(),
            latency_ms,
            ttft_ms,
            prompt_tokens,
            completion_tokens,
            learned: taught.then_some(kind == OutcomeKind::Success),
            request_id,
            source: None,
            verdict: None,
            confidence: None,
            detail: None,
        };
        self.log(decision.py(), recorded, logged);
        Ok(taught)
    }

    /// Records a decision's outcome in the tracker and frees its replica
    /// slot; a decision can be recorded once. True when the learned router
    /// learned it.
    fn record(
        &self,
        decision: &Bound<'_, PyAny>,
        success: &Bound<'_, PyAny>,
        latency_ms: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        // An exact bool and float pass on one type check each (no slower
        // than PyO3's conversion); anything else gets a named error.
        let success = flag(success, "success")?;
        let latency_ms = number(latency_ms, "latency_ms")?;
        let (taught, recorded) = self.record_once(decision, |inner, d, free_slot| {
            inner.record(d, success, latency_ms, free_slot)
        })?;
        let outcome = if success { "success" } else { "other" };
        let learned = taught.then_some(success);
        self.log(
            decision.py(),
            recorded,
            LoggedOutcome::plain(outcome, latency_ms, learned),
        );
        // A caller's verdict is about the replica, as the core counts it.
        self.publish(decision, outcome, latency_ms, learned, true)?;
        Ok(taught)
    }

    /// The callables ``record`` and ``feedback`` hand each outcome to after
    /// recording it (a tuple, replaced whole; empty for none): a
    /// ``Router``'s ``OutcomeFeed`` keeps its subscribers here.
    fn set_subscribers(&self, subscribers: &Bound<'_, PyAny>) -> PyResult<()> {
        let tuple = subscribers
            .cast::<PyTuple>()
            .map_err(|_| type_error("subscribers", "a tuple of callables", subscribers))?;
        if let Some(bad) = tuple.iter().find(|s| !s.is_callable()) {
            return Err(type_error("subscribers[...]", "a callable", &bad));
        }
        let any = !tuple.is_empty();
        let mut held = match self.subscribers.lock() {
            Ok(held) => held,
            Err(poisoned) => poisoned.into_inner(),
        };
        *held = any.then(|| tuple.clone().unbind());
        self.has_subscribers.store(any, Ordering::Release);
        Ok(())
    }

    /// Refuses every later ``route`` and ``record`` with InvalidInputError
    /// ("the router is closed"): ``Router.close`` calls it first, so an
    /// outcome recorded after it is an error rather than lost.
    fn close(&self) {
        self.inner.close();
    }

    /// Appends every outcome recorded from now on to ``writer`` (an
    /// ``OutcomeLogWriter``), in Rust; None detaches the log.
    fn log_outcomes(&self, writer: Option<PyRef<'_, PyOutcomeLogWriter>>) {
        self.outcome_log.store(writer.map(|w| Arc::clone(&w.inner)));
    }

    /// A trend watch over this router's models, which the core feeds every
    /// recorded outcome about a replica in Rust (no Python call); each call
    /// adds another.
    #[pyo3(signature = (per_task = true))]
    fn watch_trends(&self, py: Python<'_>, per_task: bool) -> PyResult<PyTrendWatch> {
        let models = self.inner.models().len();
        let watch = Arc::new(TrendWatch::new(models, per_task, DEFAULT_CAPACITY)?);
        self.inner.add_sink(watch.clone());
        Ok(PyTrendWatch::wrap(py, watch, &self.names.models))
    }

    /// Gives a decision's replica slot back without recording an outcome
    /// (a request abandoned before it was sent, or one whose outcome is
    /// recorded later, once its cause is known). False when it was already
    /// recorded or released.
    fn release(&self, decision: &Bound<'_, PyAny>) -> PyResult<bool> {
        let decision = self.own_decision(decision)?;
        if decision.recorded.load(Ordering::Acquire)
            || decision.released.swap(true, Ordering::AcqRel)
        {
            return Ok(false);
        }
        self.inner.release(&decision.inner);
        Ok(true)
    }

    /// Learns a quality verdict on a decision's answer (once per decision
    /// and source; whether or not it was recorded). `source` says who gave
    /// it (`explicit`, the default: the caller; `validator`, `judge`,
    /// `shadow`, `structural`, `regeneration`, `continuation`) and
    /// `confidence` (in [0, 1]; the source's default when None) how likely
    /// it is right: it is learned as the soft target `confidence` (good) or
    /// `1 - confidence` (bad), with the source's weight. True when it was
    /// learned: learning is on, the request's text was known and the weight
    /// is above 0.
    #[pyo3(signature = (decision, good, *, source = None, confidence = None))]
    fn feedback(
        &self,
        decision: &Bound<'_, PyAny>,
        good: &Bound<'_, PyAny>,
        source: Option<&Bound<'_, PyAny>>,
        confidence: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let py = decision.py();
        let good = flag(good, "good")?;
        let source = match source {
            None => EXPLICIT,
            Some(source) => source_index(text(source, "source")?)?,
        };
        let confidence = match confidence {
            None => DEFAULT_CONFIDENCE.get(source).copied().unwrap_or(1.0),
            Some(confidence) => number(confidence, "confidence")?,
        };
        // Refused before the source's bit is taken, so a bad call leaves the
        // decision open to a good one.
        check_confidence(confidence)?;
        let given = decision;
        let decision = self.own_decision(decision)?;
        let bit = 1_u32 << source;
        if decision.judged.fetch_or(bit, Ordering::AcqRel) & bit != 0 {
            return Err(ZetaError::AlreadyRecorded {
                what:
                    "already has a verdict from this source (feedback() is taken once per source)",
            }
            .into());
        }
        let learned = self
            .inner
            .feedback(&decision.inner, good, source, confidence)?;
        // Every verdict is attributed in the log, learned or not; a verdict
        // on the answer, not on how the replica served it.
        self.log(
            py,
            decision,
            LoggedOutcome::verdict(
                SOURCES.get(source).copied().unwrap_or("explicit"),
                good,
                confidence,
                None,
                learned,
            ),
        );
        if learned {
            self.publish(given, "feedback", 0.0, Some(good), false)?;
        }
        Ok(learned)
    }

    /// Records the structural check of a decision's answer (once per
    /// decision): `check` is ``"ok"`` when nothing was wrong, else what
    /// failed (``json``, ``json_schema``, ``tools``, ``empty``,
    /// ``repetition``, ``length``). It goes to the model's record for the
    /// request's kind (plain, JSON mode, tools), which scales its capability
    /// for requests of that kind; a failure of the answer's text (empty,
    /// repetition, length) is learned as a bad verdict too. True when learned.
    fn check_answer(
        &self,
        decision: &Bound<'_, PyAny>,
        check: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let py = decision.py();
        let check = check_index(text(check, "check")?)?;
        let decision = self.own_decision(decision)?;
        if decision.judged.fetch_or(CHECKED, Ordering::AcqRel) & CHECKED != 0 {
            return Err(ZetaError::AlreadyRecorded {
                what: "already has a structural check (check_answer() is taken once)",
            }
            .into());
        }
        let learned = self.inner.check_answer(&decision.inner, check)?;
        if check != 0 {
            // Failures only: a row per passed check would double the log.
            self.log(
                py,
                decision,
                LoggedOutcome::verdict(
                    "structural",
                    false,
                    1.0,
                    CHECKS.get(check).copied(),
                    learned,
                ),
            );
        }
        Ok(learned)
    }

    /// Every verdict counted so far: ``[(source, model_id, good, bad)]``.
    fn verdict_counts(&self, py: Python<'_>) -> Vec<(&'static str, Py<PyString>, u64, u64)> {
        self.inner
            .verdict_counts()
            .into_iter()
            .filter_map(|(source, model, good, bad)| {
                let name = self.names.models.get(model)?.clone_ref(py);
                Some((*SOURCES.get(source)?, name, good, bad))
            })
            .collect()
    }

    /// A model's recent structural checks per request kind:
    /// ``{kind: (checked, failed, capability_factor)}`` for ``plain``,
    /// ``json`` and ``tools``.
    fn kind_checks<'py>(
        &self,
        py: Python<'py>,
        model: &Bound<'_, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let m = self.inner.model_index(text(model, "model")?)?;
        let out = PyDict::new(py);
        for (kind, record) in KINDS.iter().zip(self.inner.kind_checks(m)?) {
            out.set_item(*kind, record)?;
        }
        Ok(out)
    }

    /// Counts `ms` of the caller's own time on one request (a gateway's
    /// overhead) in a lifetime histogram read by ``overhead()``.
    fn record_overhead(&self, ms: &Bound<'_, PyAny>) -> PyResult<()> {
        Ok(self.inner.record_overhead(number(ms, "ms")?)?)
    }

    /// The overhead histogram: ``{"buckets": [(le_ms, cumulative)], "sum_ms", "count"}``.
    fn overhead<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        histogram_dict(py, &self.inner.overhead())
    }

    /// Every model's score now for every task it serves, as routing sees
    /// it: ``[(model_id, task, ScoreBreakdown)]`` in configuration order.
    fn scores(
        &self,
        py: Python<'_>,
    ) -> PyResult<Vec<(Py<PyString>, &'static str, PyScoreBreakdown)>> {
        let scores = self.inner.scores()?;
        Ok(scores
            .into_iter()
            .filter_map(|(m, task, breakdown)| {
                let id = self.names.models.get(m)?.clone_ref(py);
                Some((id, *TASKS.get(task)?, PyScoreBreakdown::new(breakdown)))
            })
            .collect())
    }

    /// Spends a retry token; False when retries are over budget.
    fn try_retry(&self) -> bool {
        self.inner.try_retry()
    }

    /// Spends a hedge token; False when hedges are over budget.
    fn try_hedge(&self) -> bool {
        self.inner.try_hedge()
    }

    /// (retry tokens, hedge tokens) left.
    fn budget_tokens(&self) -> (f64, f64) {
        self.inner.budget_tokens()
    }

    /// The jittered wait in ms before retry number `retry` (1 = first), at
    /// least `retry_after_ms` when the server sent one.
    #[pyo3(signature = (retry, retry_after_ms = None))]
    fn backoff_ms(
        &self,
        retry: &Bound<'_, PyAny>,
        retry_after_ms: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<f64> {
        let retry = count_u32(retry, "retry")?;
        let retry_after_ms = opt_number(retry_after_ms, "retry_after_ms")?;
        Ok(self.inner.backoff_ms(retry, retry_after_ms))
    }

    /// The recent p95 latency of the decision's replica (None without
    /// enough data): how long to wait before hedging a request to it.
    fn replica_p95_ms(&self, decision: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
        let decision = self.own_decision(decision)?;
        Ok(self
            .inner
            .replica_p95_ms(decision.inner.model, decision.inner.replica))
    }

    /// Stores an engine's own load report (queued requests, KV-cache use
    /// 0..1) for a replica, taken now; it stops counting after the TTL.
    fn set_engine_load(
        &self,
        model: &Bound<'_, PyAny>,
        replica: &Bound<'_, PyAny>,
        waiting: &Bound<'_, PyAny>,
        kv_usage: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let (model, replica) = (text(model, "model")?, text(replica, "replica")?);
        let waiting = count_u32(waiting, "waiting")?;
        let kv_usage = number(kv_usage, "kv_usage")?;
        let (m, r) = self.inner.replica_index(model, replica)?;
        if !(0.0..=1.0).contains(&kv_usage) {
            return Err(ZetaError::InvalidInput {
                field: "kv_usage",
                position: Position::Scalar,
                expected: "in [0, 1]",
                value: float_repr(kv_usage),
            }
            .into());
        }
        let now = self.inner.tracker().clock().now_ms();
        if let Some(model) = self.inner.models().get(m) {
            model.replicas.set_engine_load(r, waiting, kv_usage, now);
        }
        Ok(())
    }

    /// Keeps the decision's replica out of selection for `hold_ms` (a
    /// server's `Retry-After`); it is probed when the time is up.
    fn hold_replica(
        &self,
        decision: &Bound<'_, PyAny>,
        hold_ms: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let decision = self.own_decision(decision)?;
        let hold_ms = non_negative("hold_ms", number(hold_ms, "hold_ms")?)?;
        self.inner
            .hold_replica(decision.inner.model, decision.inner.replica, hold_ms as u64);
        Ok(())
    }

    /// Closes a replica's circuit breaker.
    fn reset_breaker(&self, model: &Bound<'_, PyAny>, replica: &Bound<'_, PyAny>) -> PyResult<()> {
        let (m, r) = self
            .inner
            .replica_index(text(model, "model")?, text(replica, "replica")?)?;
        if let Some(model) = self.inner.models().get(m) {
            model.replicas.reset_breaker(r);
        }
        Ok(())
    }

    /// The prefix index of a model's `cache_aware` policy: entries,
    /// sessions, bytes held and, per replica (by id), what it expected
    /// cached against what the engine reported (None under other policies).
    fn prefix_cache<'py>(
        &self,
        py: Python<'py>,
        model: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let (m, routed) = self.model(text(model, "model")?)?;
        let Some(stats) = routed.replicas.policy().prefix_index().map(|i| i.stats()) else {
            return Ok(None);
        };
        let out = PyDict::new(py);
        out.set_item("entries", stats.entries)?;
        out.set_item("sessions", stats.sessions)?;
        out.set_item("allocated_bytes", stats.allocated_bytes)?;
        let replicas = PyDict::new(py);
        let names = self.names.replicas.get(m);
        for (r, cache) in stats.replicas.iter().enumerate() {
            let row = PyDict::new(py);
            row.set_item("requests", cache.tick)?;
            row.set_item(
                "horizon",
                (cache.horizon != u32::MAX).then_some(cache.horizon),
            )?;
            row.set_item("reports", cache.reports)?;
            row.set_item("hits", cache.hits)?;
            row.set_item("misses", cache.misses)?;
            row.set_item("predicted_tokens", cache.predicted_tokens)?;
            row.set_item("cached_tokens", cache.cached_tokens)?;
            row.set_item("prompt_tokens", cache.prompt_tokens)?;
            row.set_item("recent_work", cache.work)?;
            match names.and_then(|n| n.get(r)) {
                Some(name) => replicas.set_item(name.bind(py), row)?,
                None => replicas.set_item(r, row)?,
            }
        }
        out.set_item("replicas", replicas)?;
        Ok(Some(out))
    }

    /// Starts keeping each `cache_aware` model's placements for sharing
    /// with other router instances (`export_prefix` takes them); False
    /// when no model uses the policy.
    fn share_prefixes(&self) -> bool {
        let mut any = false;
        for model in self.inner.models() {
            if let Some(index) = model.replicas.policy().prefix_index() {
                index.set_sharing(true);
                any = true;
            }
        }
        any
    }

    /// The placements `model`'s prefix index made since the last call,
    /// packed for another instance's `import_prefix`, and how many were
    /// dropped for want of room; empty bytes unless sharing is on.
    fn export_prefix<'py>(
        &self,
        py: Python<'py>,
        model: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyBytes>, u64)> {
        let (_, routed) = self.model(text(model, "model")?)?;
        let (data, dropped) = routed
            .replicas
            .policy()
            .prefix_index()
            .map(|index| index.export())
            .unwrap_or_default();
        Ok((PyBytes::new(py, &data), dropped))
    }

    /// Applies another instance's placements (its `export_prefix`) to
    /// `model`'s prefix index; the count applied. A record that does not
    /// parse is refused whole (InvalidInputError, nothing applied).
    fn import_prefix(&self, model: &Bound<'_, PyAny>, data: &[u8]) -> PyResult<usize> {
        let (_, routed) = self.model(text(model, "model")?)?;
        let Some(index) = routed.replicas.policy().prefix_index() else {
            return Ok(0);
        };
        let now = self.inner.tracker().clock().now_ms();
        index.import(data, now).map_err(|err| {
            ZetaError::InvalidInput {
                field: "data",
                position: Position::Scalar,
                expected: "placements from export_prefix() of the same model",
                value: err.to_string(),
            }
            .into()
        })
    }

    /// Each replica of a model now: health, breaker, load, outcome counters.
    fn replica_status(&self, model: &Bound<'_, PyAny>) -> PyResult<Vec<PyReplicaStatus>> {
        let (_, routed) = self.model(text(model, "model")?)?;
        Ok(replica_status(&self.inner, routed))
    }

    /// What the learned router expects of each model for `request` (a
    /// prompt, messages or a body): success probability, category prior,
    /// learned capability and how far it replaces the configured one,
    /// expected latency (None until enough are learned).
    fn predict<'py>(
        &self,
        py: Python<'py>,
        request: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let learning = self.inner.learning().ok_or(ZetaError::NotEnabled {
            operation: "predict()",
            setting: "learning.enabled",
        })?;
        let (text, turns, embedding) = request_text(request, None)?;
        let (profile, learned) = profile_for_learning(&text, turns, embedding)?;
        predictions(
            py,
            learning,
            &learned,
            profile.inner.features.token_estimate,
            &self.names.models,
        )
    }

    /// The learned router's predictor (None when learning is off).
    #[getter]
    fn predictor(&self) -> Option<PyOutcomePredictor> {
        self.inner.learning().map(|l| PyOutcomePredictor {
            inner: Arc::clone(&l.predictor),
        })
    }

    /// The model ordering's name (``MODEL_ORDERINGS``).
    #[getter]
    fn model_ordering(&self) -> &'static str {
        self.inner.ordering().name()
    }

    /// The complexity range a model suits in a context (None: its own).
    #[pyo3(signature = (model, context = None))]
    fn complexity_range(
        &self,
        model: &Bound<'_, PyAny>,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<(f64, f64)> {
        let m = self.inner.model_index(text(model, "model")?)?;
        let context = self.context_index(opt_text(context, "context")?)?;
        Ok(self
            .inner
            .range(m, context)
            .ok_or(ZetaError::ForeignDecision)?)
    }

    /// Tunes complexity ranges from recorded outcomes; returns the changes as
    /// dicts (model_id, context, old_high, new_high, requests, success_rate).
    #[pyo3(
        signature = (min_requests = None, target_success_rate = None, step = None),
        text_signature = "(self, min_requests=20, target_success_rate=0.95, step=0.05)"
    )]
    fn tune_ranges<'py>(
        &self,
        py: Python<'py>,
        min_requests: Option<&Bound<'py, PyAny>>,
        target_success_rate: Option<&Bound<'py, PyAny>>,
        step: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let min_requests = or_default(min_requests, 20, "min_requests", count)?;
        let target_success_rate =
            or_default(target_success_rate, 0.95, "target_success_rate", number)?;
        let step = or_default(step, 0.05, "step", number)?;
        let changes = self.inner.tune_ranges(Tuning {
            min_requests: min_requests.max(1),
            target_success_rate,
            step,
        })?;
        changes
            .iter()
            .map(|change| range_change(py, change, &self.names.models, &self.contexts))
            .collect()
    }

    /// Sets what other router instances have running on each replica of a
    /// model (shared state): counted when replicas' loads are compared.
    fn set_remote_in_flight(
        &self,
        model: &Bound<'_, PyAny>,
        counts: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let (_, routed) = self.model(text(model, "model")?)?;
        let items = counts
            .try_iter()
            .map_err(|_| type_error("counts", "a list of integers", counts))?;
        let mut read = Vec::with_capacity(routed.replica_ids.len());
        for (index, item) in items.enumerate() {
            read.push(count_u32(&item?, &format!("counts[{index}]"))?);
        }
        let counts = read;
        if counts.len() != routed.replica_ids.len() {
            return Err(ZetaError::LengthMismatch {
                field: "counts",
                expected: routed.replica_ids.len(),
                got: counts.len(),
            }
            .into());
        }
        routed.replicas.set_remote_in_flight(&counts);
        Ok(())
    }

    /// What other router instances have running on each replica of a model.
    fn remote_in_flight(&self, model: &Bound<'_, PyAny>) -> PyResult<Vec<u32>> {
        Ok(self
            .model(text(model, "model")?)?
            .1
            .replicas
            .remote_in_flight())
    }

    /// Declares the request features (``images``, ``audio``, ``tools``,
    /// ``json_schema``, ``embeddings``, ``responses``, ``messages``) a model
    /// cannot serve: it is never a candidate for requests needing them.
    fn set_unserved(&self, model: &Bound<'_, PyAny>, features: &Bound<'_, PyAny>) -> PyResult<()> {
        let (_, routed) = self.model(text(model, "model")?)?;
        let features = texts(features, "features")?;
        let mut mask = 0;
        for name in &features {
            mask |= feature_bit(name)?;
        }
        routed.unserved.declare(mask);
        Ok(())
    }

    /// Remembers for `ttl_s` that a model refused requests with `feature`
    /// (its server said it cannot serve them): it is skipped for them meanwhile.
    fn learn_unserved(
        &self,
        model: &Bound<'_, PyAny>,
        feature: &Bound<'_, PyAny>,
        ttl_s: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let m = self.inner.model_index(text(model, "model")?)?;
        let bit = feature_bit(text(feature, "feature")?)?;
        let ttl_s = non_negative("ttl_s", number(ttl_s, "ttl_s")?)?;
        self.inner.learn_unserved(m, bit, (ttl_s * 1e3) as u64);
        Ok(())
    }

    /// The features a model cannot serve now (declared and learned).
    fn unserved(&self, model: &Bound<'_, PyAny>) -> PyResult<Vec<&'static str>> {
        let (_, routed) = self.model(text(model, "model")?)?;
        let mask = routed.unserved.mask(self.inner.tracker().clock().now_ms());
        Ok(FEATURES
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, name)| *name)
            .collect())
    }

    /// Requests in flight on each replica of a model.
    fn in_flight(&self, model: &Bound<'_, PyAny>) -> PyResult<Vec<u32>> {
        Ok(self.model(text(model, "model")?)?.1.replicas.in_flight())
    }

    /// Marks a replica healthy or not; unhealthy replicas are never chosen.
    fn set_healthy(
        &self,
        model: &Bound<'_, PyAny>,
        replica: &Bound<'_, PyAny>,
        healthy: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let healthy = flag(healthy, "healthy")?;
        let (m, r) = self
            .inner
            .replica_index(text(model, "model")?, text(replica, "replica")?)?;
        if let Some(routed) = self.inner.models().get(m) {
            routed.replicas.set_healthy(r, healthy);
        }
        Ok(())
    }
}

/// Profiles a text and builds its learned features in the same pass over
/// its words (the profiler's buckets are the word block).
fn profile_for_learning(
    text: &str,
    turns: usize,
    embedding: bool,
) -> PyResult<(PyRequestProfile, Arc<LearnedRequest>)> {
    let mut words = Vec::new();
    let profile = profile_keeping_buckets(text, turns, embedding, &mut words)?;
    let task = profile.inner.task.unwrap_or(4);
    let category = RouterCore::learned_category(task, profile.inner.complexity);
    let features = features_with_words(words, text, &[category.as_str()]);
    Ok((profile, Arc::new(LearnedRequest { features, category })))
}
