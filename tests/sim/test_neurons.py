"""IF neuron updates against hand-computed traces, and the rate -> clipped ReLU limit."""

import pytest
import torch

from ann2snn.sim.neurons import if_step, if_zero_step, run_if_chunk, signed_if_step


def test_if_trace_by_hand():
    # current 0.4 per step from v=0: m = .4 .8 1.2(spike, v=.2) .6 1.0(spike, v=0) .4
    v = torch.zeros(1)
    spikes, vs = [], []
    for _ in range(6):
        s, v = if_step(v, torch.tensor([0.4]))
        spikes.append(int(s))
        vs.append(round(float(v), 6))
    assert spikes == [0, 0, 1, 0, 1, 0]
    assert vs == [0.4, 0.8, 0.2, 0.6, 0.0, 0.4]


def test_if_reset_by_subtraction_keeps_residue_above_threshold():
    s, v = if_step(torch.tensor([0.0]), torch.tensor([1.7]))
    assert float(s) == 1.0 and float(v) == pytest.approx(0.7)
    s, v = if_step(v, torch.tensor([0.0]))
    assert float(s) == 0.0 and float(v) == pytest.approx(0.7)


def test_signed_if_takes_back_an_early_spike():
    # +1.0 then -0.6 twice: spike at t=1 (v=0); t=2: m=-0.6 < 0 with count 1 -> -1 spike, v=0.4;
    # t=3: m=-0.2 but the count is 0, so no spike
    v, c = torch.zeros(1), torch.zeros(1)
    out = []
    for i in (1.0, -0.6, -0.6):
        s, v, c = signed_if_step(v, c, torch.tensor([i]))
        out.append((int(s), round(float(v), 6), int(c)))
    assert out == [(1, 0.0, 1), (-1, 0.4, 0), (0, -0.2, 0)]


def test_signed_if_never_goes_negative_count():
    v, c = torch.zeros(1), torch.zeros(1)
    for _ in range(5):
        s, v, c = signed_if_step(v, c, torch.tensor([-1.0]))
        assert int(s) == 0 and int(c) == 0


@pytest.mark.parametrize("v0", [0.0, 0.5])
@pytest.mark.parametrize("steps", [8, 32, 100])
def test_rate_converges_to_clipped_relu(v0, steps):
    torch.manual_seed(0)
    a = torch.rand(5000) * 3 - 1  # inputs below 0, inside (0, 1) and above the threshold
    v = torch.full_like(a, v0)
    out = torch.empty((steps,) + a.shape)
    run_if_chunk(v, a, steps, out, constant=True)
    rate = out.sum(0) / steps
    err = (rate - a.clamp(0, 1)).abs().max()
    assert float(err) <= 1.0 / steps + 1e-6


def test_chunked_equals_step_by_step():
    torch.manual_seed(1)
    cur = torch.randn(20, 4, 3)
    v1 = torch.zeros(4, 3)
    out1 = torch.empty(20, 4, 3)
    run_if_chunk(v1.clone(), cur, 20, out1)
    v2 = torch.zeros(4, 3)
    out2 = torch.empty(20, 4, 3)
    for start in range(0, 20, 7):
        n = min(7, 20 - start)
        v2, _ = run_if_chunk(v2, cur[start:start + n], n, out2[start:start + n])
    assert torch.equal(out1, out2)


def test_zero_reset_loses_the_residue_and_fires_only_above_the_threshold():
    # constant 0.6: 0.6, 1.2 > 1 fires and resets to 0 (the 0.2 residue is lost): one spike every 2 steps
    s, v = if_zero_step(torch.tensor([0.0]), torch.tensor([0.6]))
    assert (float(s), float(v)) == (0.0, pytest.approx(0.6))
    s, v = if_zero_step(v, torch.tensor([0.6]))
    assert (float(s), float(v)) == (1.0, 0.0)
    s, v = if_zero_step(torch.tensor([0.5]), torch.tensor([0.5]))  # exactly at the threshold: no spike
    assert (float(s), float(v)) == (0.0, 1.0)


@pytest.mark.parametrize("constant", [False, True])
def test_zero_reset_chunk_equals_the_step_function(constant):
    torch.manual_seed(2)
    cur = torch.rand(4, 3) * 1.5 - 0.2 if constant else torch.randn(30, 4, 3)
    cur[0, 0] = 0.5  # lands exactly on the threshold after two steps
    v0 = torch.rand(4, 3) * 0.5
    out = torch.empty(30, 4, 3)
    v_end, _ = run_if_chunk(v0, cur, 30, out, constant=constant, reset="zero")
    v = v0
    for t in range(30):
        s, v = if_zero_step(v, cur if constant else cur[t])
        assert torch.equal(out[t], s), t
    assert torch.equal(v_end, v)
