//! `ReplicaSet`: lock-free replica slots from Python.

use pyo3::prelude::*;

use super::extract::{count, flag, index, opt_text, repr, type_error};
use crate::balance::ReplicaSet;
use crate::errors::{Position, ZetaError};
use crate::policies::replica_policy;
use crate::prefix::PrefixSettings;

/// The bound on one replica's capacity, `u32::MAX`, as the message states it.
const CAPACITY_LIMIT: &str = "at most 4294967295";

/// The replicas of one model: in-flight counters with capacity limits, and
/// the choice of a replica by a named policy (`REPLICA_POLICIES`).
#[pyclass(name = "ReplicaSet", module = "zeta_fast._core", frozen)]
pub struct PyReplicaSet {
    inner: ReplicaSet,
}

impl PyReplicaSet {
    /// A replica index argument, in range.
    fn check(&self, value: &Bound<'_, PyAny>) -> PyResult<usize> {
        let position = index(value, "index")?;
        if position < self.inner.len() {
            Ok(position)
        } else {
            Err(ZetaError::IndexOutOfRange {
                what: "replica",
                index: position,
                len: self.inner.len(),
            }
            .into())
        }
    }
}

#[pymethods]
impl PyReplicaSet {
    #[new]
    #[pyo3(
        signature = (capacities, policy = None),
        text_signature = "(capacities, policy='least_loaded')"
    )]
    fn new(capacities: &Bound<'_, PyAny>, policy: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let policy = opt_text(policy, "policy")?.unwrap_or("least_loaded");
        let items = capacities.try_iter().map_err(|_| {
            type_error(
                "capacities",
                "a sequence of integers (0 = unlimited)",
                capacities,
            )
        })?;
        let mut values = Vec::new();
        for (index, item) in items.enumerate() {
            let value = count(&item?, &format!("capacities[{index}]"))?;
            values.push(
                u32::try_from(value).map_err(|_| ZetaError::InvalidConfigEntry {
                    field: "capacities",
                    position: Position::Flat(index),
                    expected: CAPACITY_LIMIT,
                    value: value.to_string(),
                })?,
            );
        }
        if values.is_empty() {
            return Err(ZetaError::InvalidConfig {
                field: "capacities",
                expected: "a non-empty sequence (at least one replica)",
                value: repr(capacities),
            }
            .into());
        }
        Ok(Self {
            inner: ReplicaSet::new(
                &values,
                replica_policy(policy, values.len(), &PrefixSettings::default())?,
            ),
        })
    }

    /// Chooses a healthy replica with room and takes a slot on it; `None`
    /// when all are down or at capacity (route to the next-best model).
    fn acquire(&self) -> Option<usize> {
        self.inner.acquire()
    }

    /// Takes a slot on one replica if it is healthy and has room.
    fn try_acquire(&self, index: &Bound<'_, PyAny>) -> PyResult<bool> {
        let index = self.check(index)?;
        Ok(self.inner.try_acquire(index))
    }

    /// Gives a slot back when the request ends (success or not).
    fn release(&self, index: &Bound<'_, PyAny>) -> PyResult<()> {
        let index = self.check(index)?;
        self.inner.release(index);
        Ok(())
    }

    /// Marks a replica healthy or not; unhealthy replicas are never chosen.
    fn set_healthy(&self, index: &Bound<'_, PyAny>, healthy: &Bound<'_, PyAny>) -> PyResult<()> {
        let index = self.check(index)?;
        let healthy = flag(healthy, "healthy")?;
        self.inner.set_healthy(index, healthy);
        Ok(())
    }

    fn is_healthy(&self, index: &Bound<'_, PyAny>) -> PyResult<bool> {
        let index = self.check(index)?;
        Ok(self.inner.is_healthy(index))
    }

    /// Requests running on each replica now.
    #[getter]
    fn in_flight(&self) -> Vec<u32> {
        self.inner.in_flight()
    }

    #[getter]
    fn policy(&self) -> &'static str {
        self.inner.policy_name()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }
}
