"""The DP text generator: byte-level transformer conditioned on the record, placeholders for PII."""
