"""Shared test set-up: snapshots never land in the real state folder."""

from __future__ import annotations

import os
import tempfile

pytest_plugins = ["tests.llamacpp_fixtures", "tests.redis_fixtures"]

# Trackers persist by default; point the default location at a throw-away
# folder before any test creates one.
os.environ.setdefault("ZETA_FAST_STATE_DIR", tempfile.mkdtemp(prefix="zeta-fast-tests-"))

# LiteLLM (the bench extra) fetches a model price list from the internet at
# import unless told to use its bundled copy: tests stay on this machine.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
