"""Releases: policy-gated bundles with datasheets, Croissant metadata and a verifiable manifest."""
