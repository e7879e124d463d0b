"""Adapters that let other libraries use zeta_fast's router."""
