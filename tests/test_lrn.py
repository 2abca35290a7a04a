"""LocalResponseNorm against the paper's formula, written out as a plain loop (§3.3)."""

import pytest
import torch
from torch import nn

from alexnet.lrn import LocalResponseNorm


def reference_lrn(a: torch.Tensor, size=5, alpha=1e-4, beta=0.75, k=2.0) -> torch.Tensor:
    """b[i] = a[i] / (k + alpha * sum_{j=max(0,i-n/2)}^{min(N-1,i+n/2)} a[j]^2)^beta, channel by channel."""
    channels = a.shape[1]
    out = torch.empty_like(a)
    for i in range(channels):
        lo, hi = max(0, i - size // 2), min(channels - 1, i + size // 2)
        s = (a[:, lo : hi + 1] ** 2).sum(1)
        out[:, i] = a[:, i] / (k + alpha * s) ** beta
    return out


@pytest.mark.parametrize("channels", [1, 2, 3, 7, 96])
def test_matches_formula_float64(channels):
    a = torch.randn(2, channels, 5, 4, dtype=torch.float64) * 40  # large enough for alpha to matter
    torch.testing.assert_close(LocalResponseNorm()(a), reference_lrn(a), rtol=1e-12, atol=1e-12)
    # The sum term really acts: without it the result would differ.
    assert not torch.allclose(reference_lrn(a), a / 2.0**0.75)


def test_alpha_is_not_divided_by_size_but_can_be():
    a = torch.randn(3, 11, 4, 4, dtype=torch.float64) * 30
    torch.testing.assert_close(LocalResponseNorm(5, 1e-4, 0.75, 2.0)(a), nn.LocalResponseNorm(5, 5e-4, 0.75, 2.0)(a))
    caffe = LocalResponseNorm(5, 1e-4, 0.75, 1.0, divide_alpha_by_size=True)
    torch.testing.assert_close(caffe(a), nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0)(a))
    torch.testing.assert_close(caffe(a), reference_lrn(a, alpha=1e-4 / 5, k=1.0))


@pytest.mark.parametrize("size", [1, 3, 5, 9])
def test_gradient_matches_autograd_of_formula(size):
    a = (torch.randn(2, 8, 3, 3, dtype=torch.float64) * 3).requires_grad_()
    lrn = LocalResponseNorm(size, alpha=0.05, beta=0.75, k=2.0)
    assert torch.autograd.gradcheck(lrn, (a,))
    grad_out = torch.randn(2, 8, 3, 3, dtype=torch.float64)
    (ours,) = torch.autograd.grad(lrn(a), a, grad_out)
    (ref,) = torch.autograd.grad(reference_lrn(a, size, 0.05, 0.75, 2.0), a, grad_out)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


def test_channels_last_same_values_gradients_and_layout():
    a = torch.randn(2, 16, 6, 5, dtype=torch.float64) * 20
    cl = a.contiguous(memory_format=torch.channels_last).requires_grad_()
    nchw = a.clone().requires_grad_()
    lrn = LocalResponseNorm()
    out_cl, out = lrn(cl), lrn(nchw)
    assert out_cl.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out_cl, out)
    g = torch.randn_like(a)
    out_cl.backward(g)
    out.backward(g)
    torch.testing.assert_close(cl.grad, nchw.grad)


def test_bfloat16_and_autocast():
    a = torch.randn(2, 12, 5, 5) * 20
    ref = reference_lrn(a.double())
    low = a.bfloat16().requires_grad_()
    out = LocalResponseNorm()(low)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.double(), ref, rtol=2e-2, atol=1e-2)
    out.float().sum().backward()
    assert low.grad is not None and low.grad.dtype == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        conv_out = nn.Conv2d(3, 12, 3)(torch.randn(1, 3, 7, 7))  # bf16 under autocast
        assert LocalResponseNorm()(conv_out).dtype == torch.bfloat16


def test_groups_normalize_each_tower_on_its_own():
    """The paper's towers each normalize their own maps: groups=2 is the formula applied to each half."""
    a = (torch.randn(2, 96, 3, 3, dtype=torch.float64) * 40).requires_grad_()
    lrn = LocalResponseNorm(groups=2)
    out = lrn(a)
    torch.testing.assert_close(out, torch.cat([reference_lrn(half) for half in a.split(48, 1)], 1))
    # The window really is clipped at the boundary: channel 47 differs from the ungrouped result.
    assert not torch.allclose(out[:, 47], LocalResponseNorm()(a)[:, 47])
    assert torch.autograd.gradcheck(
        LocalResponseNorm(3, alpha=0.05, groups=2), (a[:1, :8, :2, :2].detach().requires_grad_(),)
    )
    with pytest.raises(ValueError, match="groups"):
        LocalResponseNorm(groups=2)(torch.randn(1, 5, 2, 2))


def test_invalid_arguments():
    with pytest.raises(ValueError, match="odd"):
        LocalResponseNorm(size=4)
    with pytest.raises(ValueError, match="NCHW"):
        LocalResponseNorm()(torch.randn(3, 4))
