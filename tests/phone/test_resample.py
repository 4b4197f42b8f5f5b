"""The streaming resampler on synthetic signals whose right answer is known exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diagnostics.audio.tone import measure_tone
from phone.resample import Resampler

RATE_PAIRS = [(48000, 16000), (16000, 48000), (44100, 16000), (16000, 44100), (8000, 16000), (16000, 8000)]


def sine(rate: int, seconds: float, hz: float, amplitude: float = 0.5) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * hz * np.arange(round(rate * seconds)) / rate)


def steady(y: np.ndarray, resampler: Resampler) -> np.ndarray:
    """Drop the filter's start-up transient (twice its delay) and the last few ms."""
    skip = 2 * math.ceil(resampler.delay_samples) + 1
    return y[skip : len(y) - skip]


def split(x: np.ndarray, cuts: list[int]) -> list[np.ndarray]:
    return np.split(x, sorted({c % (len(x) + 1) for c in cuts}))


@settings(max_examples=40, deadline=None)
@given(pair=st.sampled_from(RATE_PAIRS), cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=25))
def test_blocks_of_any_size_give_the_same_output_as_one_block(pair: tuple[int, int], cuts: list[int]) -> None:
    x = np.random.default_rng(len(cuts)).uniform(-1, 1, 4410)
    whole = Resampler(*pair).process(x)
    streamed = Resampler(*pair)
    pieces = [streamed.process(block) for block in split(x, cuts)]
    np.testing.assert_allclose(np.concatenate(pieces), whole, rtol=0, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(pair=st.sampled_from(RATE_PAIRS), sizes=st.lists(st.integers(min_value=0, max_value=1500), max_size=30))
def test_output_count_depends_only_on_the_input_count(pair: tuple[int, int], sizes: list[int]) -> None:
    """No drift: after N inputs there are exactly ceil(N * out / in) outputs, however N was split."""
    resampler = Resampler(*pair)
    n_in = n_out = 0
    for size in sizes:
        predicted = resampler.output_count(size)
        produced = len(resampler.process(np.zeros(size)))
        assert produced == predicted
        n_in += size
        n_out += produced
        assert n_out == -(-n_in * pair[1] // pair[0])


@given(pair=st.sampled_from(RATE_PAIRS), skew=st.integers(min_value=0, max_value=500), want=st.integers(1, 960))
def test_inputs_needed_is_the_fewest_that_give_enough_outputs(pair: tuple[int, int], skew: int, want: int) -> None:
    resampler = Resampler(*pair)
    resampler.process(np.zeros(skew))  # any phase
    need = resampler.inputs_needed(want)
    assert resampler.output_count(need) >= want > resampler.output_count(need - 1)


@pytest.mark.parametrize("pair", RATE_PAIRS)
def test_a_1khz_tone_keeps_its_frequency_and_level(pair: tuple[int, int]) -> None:
    in_rate, out_rate = pair
    resampler = Resampler(in_rate, out_rate)
    y = steady(resampler.process(sine(in_rate, 1.0, 1000.0)), resampler)
    tone = measure_tone(y, out_rate)
    assert abs(tone.frequency_hz - 1000.0) <= 1.0
    assert abs(tone.level_dbfs - 20 * math.log10(0.5 / math.sqrt(2))) <= 0.1


@pytest.mark.parametrize("pair", [(48000, 16000), (44100, 16000), (16000, 8000)])
def test_energy_above_the_new_nyquist_is_attenuated_60_db(pair: tuple[int, int]) -> None:
    """A sweep of tones from the new Nyquist frequency to the old one: each aliases at least 60 dB down."""
    in_rate, out_rate = pair
    worst_db = -math.inf
    for tone_hz in np.linspace(out_rate / 2, in_rate / 2 - 50, 40):
        resampler = Resampler(in_rate, out_rate)
        y = steady(resampler.process(sine(in_rate, 0.3, tone_hz)), resampler)
        worst_db = max(worst_db, 10 * math.log10(np.mean(y**2) / (0.5**2 / 2)))
    assert worst_db <= -60.0


@pytest.mark.parametrize(("pair", "tone_hz"), [((16000, 48000), 1000.0), ((16000, 48000), 7500.0),
                                               ((16000, 44100), 3000.0), ((8000, 16000), 3500.0)])
def test_upsampling_leaves_no_images_above_the_old_nyquist(pair: tuple[int, int], tone_hz: float) -> None:
    in_rate, out_rate = pair
    resampler = Resampler(in_rate, out_rate)
    y = steady(resampler.process(sine(in_rate, 0.5, tone_hz)), resampler)
    spectrum = np.abs(np.fft.rfft(y * np.blackman(len(y)))) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / out_rate)
    images = spectrum[freqs >= in_rate / 2].sum() / spectrum.sum()
    assert 10 * math.log10(images) <= -60.0


@pytest.mark.parametrize("pair", RATE_PAIRS)
def test_measured_delay_matches_delay_samples(pair: tuple[int, int]) -> None:
    """Cross-correlate the output of a band-limited chirp with the same chirp computed at the output rate."""
    in_rate, out_rate = pair
    resampler = Resampler(in_rate, out_rate)
    seconds, f0, f1 = 0.25, 200.0, 0.8 * min(in_rate, out_rate) / 2

    def chirp(t: np.ndarray) -> np.ndarray:
        window = np.sin(np.pi * np.clip(t / seconds, 0, 1)) ** 2  # smooth ends: nothing out of band
        return window * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds)))

    n_in = round(in_rate * seconds)
    y = resampler.process(np.concatenate([chirp(np.arange(n_in) / in_rate), np.zeros(in_rate // 10)]))
    reference = chirp(np.arange(len(y)) / out_rate)
    corr = np.correlate(y, reference, mode="full")[len(y) - 1 :]  # lags 0, 1, ...
    lag = int(np.argmax(corr))
    y0, y1, y2 = corr[lag - 1], corr[lag], corr[lag + 1]
    measured = lag + 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)
    assert abs(measured - resampler.delay_samples) <= 0.1, (measured, resampler.delay_samples)
    assert resampler.delay_ms == pytest.approx(resampler.delay_samples / out_rate * 1000)


def test_matching_rates_pass_samples_through_unchanged() -> None:
    resampler = Resampler(16000, 16000)
    x = np.random.default_rng(0).uniform(-1, 1, 333)
    assert resampler.identity and resampler.delay_samples == 0 and resampler.delay_ms == 0
    np.testing.assert_array_equal(resampler.process(x), x)


def test_reset_restarts_the_stream() -> None:
    resampler = Resampler(44100, 16000)
    x = np.random.default_rng(1).uniform(-1, 1, 1000)
    first = resampler.process(x)
    resampler.process(x[:77])
    resampler.reset()
    np.testing.assert_array_equal(resampler.process(x), first)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 16000), r"sample rates must be positive \(got 0 -> 16000 Hz\)"),
        ((48000, -1), r"sample rates must be positive \(got 48000 -> -1 Hz\)"),
    ],
)
def test_rejects_bad_rates(args: tuple[int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Resampler(*args)


def test_rejects_a_stereo_block() -> None:
    with pytest.raises(ValueError, match=r"expected a mono block \(1-D array\), got shape \(4, 2\)"):
        Resampler(48000, 16000).process(np.zeros((4, 2)))
