"""Audits of a synthetic corpus against the real one: memorization, PII, attacks, fidelity.

Audits read real data again, outside the DP guarantee: their outputs are internal unless aggregated for release.
"""
