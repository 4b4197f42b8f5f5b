"""The SPSC ring against a plain list model, across threads, and without allocating sample buffers."""

from __future__ import annotations

import threading
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from phone.ring import RingBuffer

# One operation: ("w", n) writes the next n ramp samples, ("r", n) reads n, ("d", n) discards n.
operations = st.lists(
    st.tuples(st.sampled_from(["w", "r", "d"]), st.integers(min_value=0, max_value=40)), max_size=60
)


@given(capacity=st.integers(min_value=1, max_value=32), ops=operations)
def test_ring_behaves_like_a_bounded_fifo(capacity: int, ops: list[tuple[str, int]]) -> None:
    ring = RingBuffer(capacity)
    model: list[float] = []
    next_value = 0.0
    overruns = underruns = discarded = 0
    for op, n in ops:
        if op == "w":
            x = np.arange(next_value, next_value + n, dtype=np.float32)
            next_value += n
            fits = min(n, capacity - len(model))
            assert ring.write(x) == fits
            model.extend(x[:fits].tolist())
            overruns += n - fits
        elif op == "r":
            out = np.full(n, np.nan, dtype=np.float32)
            got = ring.read_into(out)
            expected = model[:n] + [0.0] * max(0, n - len(model))
            assert got == min(n, len(model))
            assert out.tolist() == expected
            underruns += n - got
            del model[:got]
        else:
            dropped = ring.discard(n)
            assert dropped == min(n, len(model))
            del model[:dropped]
            discarded += dropped
        assert ring.available == len(model)
        assert ring.free == capacity - len(model)
    assert (ring.overrun_samples, ring.underrun_samples, ring.discarded_samples) == (overruns, underruns, discarded)


def test_clear_drops_everything_and_counts_it() -> None:
    ring = RingBuffer(8)
    ring.write(np.ones(5, dtype=np.float32))
    assert ring.clear() == 5
    assert (ring.available, ring.discarded_samples) == (0, 5)
    out = np.ones(3, dtype=np.float32)
    assert ring.read_into(out) == 0 and not out.any()


def test_float64_input_is_stored_as_float32() -> None:
    ring = RingBuffer(4)
    ring.write(np.array([0.5, -0.25]))
    out = np.zeros(2, dtype=np.float32)
    ring.read_into(out)
    assert out.tolist() == [0.5, -0.25]


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"ring capacity must be a positive number of samples \(got 0\)"):
        RingBuffer(0)


@pytest.mark.timeout(30)
def test_one_writer_and_one_reader_thread_pass_every_sample_in_order() -> None:
    """Lock-free hand-over: the reader sees exactly the writer's ramp, whatever the interleaving."""
    total = 100_000
    ramp = np.arange(total, dtype=np.float32)  # exact in float32 below 2**24
    ring = RingBuffer(1000)
    received = np.full(total, -1.0, dtype=np.float32)
    rng = np.random.default_rng(3)
    write_sizes = rng.integers(1, 300, size=4096)
    read_sizes = rng.integers(1, 300, size=4096)

    def writer() -> None:
        sent, k = 0, 0
        while sent < total:
            accepted = ring.write(ramp[sent : min(total, sent + int(write_sizes[k % 4096]))])
            sent += accepted
            k += 1
            if not accepted:
                time.sleep(0)  # full: let the reader run

    thread = threading.Thread(target=writer)
    thread.start()
    got, k = 0, 0
    scratch = np.zeros(300, dtype=np.float32)
    while got < total:
        want = min(int(read_sizes[k % 4096]), ring.available, total - got)
        k += 1
        if want:
            assert ring.read_into(scratch[:want]) == want
            received[got : got + want] = scratch[:want]
            got += want
        else:
            time.sleep(0)  # empty: let the writer run
    thread.join()
    np.testing.assert_array_equal(received, ramp)
    assert ring.underrun_samples == 0


def test_steady_state_moves_samples_without_allocating_buffers() -> None:
    ring = RingBuffer(48_000)
    block = np.linspace(-1, 1, 4800, dtype=np.float32)  # 19 kB: any copy of it would show
    out = np.zeros(4800, dtype=np.float32)
    for _ in range(3):  # warm up (first-call caches)
        ring.write(block)
        ring.read_into(out)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(200):  # wraps around the ring many times
            ring.write(block)
            ring.read_into(out)
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - before < 2048, f"peak {peak - before} bytes above baseline"
    assert after - before < 512
