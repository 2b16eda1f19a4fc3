"""The DP tabular generator (any-order autoregressive network over DP-profiled columns)."""
