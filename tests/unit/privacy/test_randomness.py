"""The randomness authority: fresh secret roots, one stream per name, the test-only switch recorded."""

from __future__ import annotations

import numpy as np
import pytest

from privsynth.privacy.noise import CountNoise, opendp_rho
from privsynth.privacy.randomness import UNSAFE_ENV, RngMode, Streams


def test_private_roots_are_fresh_os_entropy_every_time() -> None:
    a, b = Streams.private(), Streams.private()
    assert a.mode is b.mode is RngMode.OS_ENTROPY
    draws_a = a.numpy("tabular", "*", "poisson").random(8)
    draws_b = b.numpy("tabular", "*", "poisson").random(8)
    assert not np.allclose(draws_a, draws_b)  # nothing about a fit's noise can be replayed from a seed
    assert str(a._root.entropy) not in repr(a)  # the secret root is never shown


def test_every_stage_column_and_purpose_gets_an_independent_stream() -> None:
    streams = Streams.private()
    names = [("text", "note_a", "noise"), ("text", "note_b", "noise"), ("text", "note_a", "poisson")]
    draws = [streams.numpy(*name).standard_normal(2000) for name in names]
    for i in range(len(draws)):
        for j in range(i + 1, len(draws)):
            assert abs(np.corrcoef(draws[i], draws[j])[0, 1]) < 0.1  # never the same noise vectors
            assert not np.allclose(draws[i], draws[j])
    import torch

    torch_a = torch.randn(50, generator=streams.torch("image", "scan_a", "noise"))
    torch_b = torch.randn(50, generator=streams.torch("image", "scan_b", "noise"))
    assert not torch.equal(torch_a, torch_b)


def test_torch_cpu_generators_get_a_whole_mt19937_state_not_a_32_bit_seed() -> None:
    import torch

    from privsynth.privacy.randomness import mt19937_generator

    # the trap: torch's CPU manual_seed keeps 32 bits, so seeds differing above them draw the same noise
    low = torch.randn(5, generator=torch.Generator().manual_seed(12345))
    assert torch.equal(low, torch.randn(5, generator=torch.Generator().manual_seed(12345 + (7 << 32))))
    words = np.random.default_rng(0).integers(0, 2**32, 624, dtype=np.uint64).astype(np.uint32)
    other = words.copy()
    other[300] ^= 1  # one bit of the 19,968-bit state
    a = torch.rand(2000, generator=mt19937_generator(words))
    assert not torch.equal(a, torch.rand(2000, generator=mt19937_generator(other)))
    assert torch.equal(a, torch.rand(2000, generator=mt19937_generator(words)))
    normal = torch.randn(20000, generator=Streams.private().torch("tabular", "*", "noise"))
    assert abs(float(normal.mean())) < 0.05 and abs(float(normal.std()) - 1) < 0.05
    with pytest.raises(ValueError, match="624"):
        mt19937_generator(np.zeros(624, dtype=np.uint32))


def test_a_stream_name_is_handed_out_once() -> None:
    streams = Streams.private()
    streams.numpy("profile", "age", "noise")
    with pytest.raises(ValueError, match="already handed out"):
        streams.numpy("profile", "age", "noise")
    with pytest.raises(ValueError, match="non-empty"):
        streams.numpy("profile", "", "noise")


def test_sampling_streams_are_reproducible_per_seed() -> None:
    one = Streams.sampling(5).numpy("sample", "tabular", "tokens").random(4)
    again = Streams.sampling(5).numpy("sample", "tabular", "tokens").random(4)
    other = Streams.sampling(6).numpy("sample", "tabular", "tokens").random(4)
    assert np.array_equal(one, again) and not np.array_equal(one, other)
    assert Streams.sampling(5).mode is RngMode.SAMPLING


def test_the_unsafe_switch_is_explicit_and_loud(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.setenv(UNSAFE_ENV, "7")
    with caplog.at_level("WARNING"):
        a, b = Streams.private(), Streams.private()
    assert a.mode is RngMode.UNSAFE_REPRODUCIBLE and "REPRODUCIBLE" in caplog.text
    assert np.array_equal(a.numpy("x", "y", "z").random(3), b.numpy("x", "y", "z").random(3))
    monkeypatch.setenv(UNSAFE_ENV, "yes")
    with pytest.raises(ValueError, match="integer"):
        Streams.private()


def test_profile_noise_is_opendps_gaussian_and_matches_what_the_ledger_accounts() -> None:
    # The ledger records noise multiplier sigma = scale / sensitivity; OpenDP certifies rho = (1/sigma)^2 / 2 zCDP,
    # exactly the Gaussian mechanism's, so the accountant's numbers are OpenDP's.
    for scale, sensitivity in ((3.0, 1.0), (12.5, 2.0), (400.0, 1.0)):
        assert opendp_rho(scale=scale, sensitivity=sensitivity) == pytest.approx((sensitivity / scale) ** 2 / 2)
    noise = CountNoise(Streams.private())
    assert "opendp" in noise.sampler
    draws = noise.add(np.zeros(4000), scale=5.0, column="age", purpose="histogram")
    assert abs(draws.mean()) < 0.4 and 4.7 < draws.std() < 5.3  # the scale it was asked for
    again = CountNoise(Streams.private()).add(np.zeros(4000), scale=5.0, column="age", purpose="histogram")
    assert not np.allclose(draws, again)  # OS randomness, not replayable


def test_in_unsafe_mode_profile_noise_is_seeded_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(UNSAFE_ENV, "3")
    one = CountNoise(Streams.private())
    two = CountNoise(Streams.private())
    assert "NOT private" in one.sampler
    a = one.add(np.zeros(10), scale=2.0, column="c", purpose="p")
    assert np.array_equal(a, two.add(np.zeros(10), scale=2.0, column="c", purpose="p"))


def test_a_private_streams_seed_sequence_never_holds_the_root() -> None:
    """A numpy generator pickles its seed sequence: an escaped stream must not give away the fit's root."""
    import pickle

    streams = Streams.private()
    root = streams._root.entropy
    generator = streams.numpy("profile", "age", "noise")
    sequence = generator.bit_generator.seed_seq
    assert sequence.entropy != root and root not in (sequence.spawn_key or ())
    assert pickle.loads(pickle.dumps(generator)).bit_generator.seed_seq.entropy != root
    # streams stay independent and reproducible under the test-only root
    assert not np.array_equal(generator.random(4), streams.numpy("profile", "wbc", "noise").random(4))
