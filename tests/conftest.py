"""Shared test set-up: snapshots never land in the real state folder."""

from __future__ import annotations

import os
import tempfile

# Trackers persist by default; point the default location at a throw-away
# folder before any test creates one.
os.environ.setdefault("ZETA_FAST_STATE_DIR", tempfile.mkdtemp(prefix="zeta-fast-tests-"))
