"""DP profiling: the metadata generators may use, learned under the ledger or declared public."""

from privsynth.profile.model import Profile, load_profile, save_profile
from privsynth.profile.profiler import ProfileConfig, dp_profile, exact_profile, profile_corpus

__all__ = ["Profile", "ProfileConfig", "dp_profile", "exact_profile", "load_profile", "profile_corpus", "save_profile"]
