"""Scale-out: several router instances share what they learned through
Redis (see :mod:`zeta_fast.shared.sync`). Needs the ``redis`` extra."""

from zeta_fast.shared.sync import (
    SharedState,
    SharedStateStats,
    default_instance_id,
    shared_client,
    window_in_redis,
)

__all__ = [
    "SharedState",
    "SharedStateStats",
    "default_instance_id",
    "shared_client",
    "window_in_redis",
]
