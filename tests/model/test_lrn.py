"""LocalResponseNorm against the paper's formula, written out as a plain loop (§3.3)."""

import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from alexnet.model import lrn as lrn_module
from alexnet.model.kernels import lrn_cpu
from alexnet.model.lrn import LocalResponseNorm


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


def reference_grouped(a: torch.Tensor, size=5, alpha=1e-4, beta=0.75, k=2.0, groups=1) -> torch.Tensor:
    """The formula applied to each of ``groups`` blocks of channels on its own."""
    return torch.cat([reference_lrn(part, size, alpha, beta, k) for part in a.split(a.shape[1] // groups, 1)], 1)


# --- The operators alexnet::lrn and alexnet::lrn_backward (GEMM path here; Triton kernels below) ---


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True])
def test_operator_values_gradients_and_layout(groups, channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    a = (torch.randn(2, 12, 4, 3, dtype=torch.float64) * 3).contiguous(memory_format=fmt).requires_grad_()
    out, scale, scale_pow = torch.ops.alexnet.lrn(a, 3, 0.05, 0.75, 2.0, groups)
    ref = reference_grouped(a, 3, 0.05, 0.75, 2.0, groups)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    assert out.is_contiguous(memory_format=fmt) and not scale.requires_grad and not scale_pow.requires_grad
    g = torch.randn_like(a)
    (ours,) = torch.autograd.grad(out, a, g)
    (theirs,) = torch.autograd.grad(ref, a, g)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    assert ours.is_contiguous(memory_format=fmt)
    small = (torch.randn(1, 8, 3, 2, dtype=torch.float64) * 3).contiguous(memory_format=fmt).requires_grad_()
    assert torch.autograd.gradcheck(LocalResponseNorm(3, alpha=0.05, groups=groups), (small,))


def test_operators_pass_torch_library_opcheck():
    """Schema, fake kernels (strides too), autograd registration and AOT dispatch, as torch.library checks them."""
    a = (torch.randn(2, 8, 3, 3, dtype=torch.float64) * 3).contiguous(memory_format=torch.channels_last)
    a.requires_grad_()
    torch.library.opcheck(torch.ops.alexnet.lrn.default, (a, 3, 0.05, 0.75, 2.0, 2))
    _, scale, scale_pow = torch.ops.alexnet.lrn(a.detach(), 3, 0.05, 0.75, 2.0, 2)
    args = (torch.randn_like(a), a.detach(), scale, scale_pow, 3, 0.05, 0.75, 2.0, 2)
    torch.library.opcheck(torch.ops.alexnet.lrn_backward.default, args)


def test_operators_pass_opcheck_on_the_c_kernel():
    """float32 on the CPU takes the C kernel: the forward returns two empty tensors, the backward recomputes."""
    a = (torch.randn(2, 8, 3, 3) * 3).contiguous(memory_format=torch.channels_last).requires_grad_()
    torch.library.opcheck(torch.ops.alexnet.lrn.default, (a, 3, 0.05, 0.75, 2.0, 2))
    _, scale, scale_pow = torch.ops.alexnet.lrn(a.detach(), 3, 0.05, 0.75, 2.0, 2)
    assert scale.numel() == scale_pow.numel() == 0
    args = (torch.randn_like(a), a.detach(), scale, scale_pow, 3, 0.05, 0.75, 2.0, 2)
    torch.library.opcheck(torch.ops.alexnet.lrn_backward.default, args)


@pytest.mark.parametrize("channels_last", [False, True])
def test_bfloat16_values_and_gradients_against_float64(channels_last):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    low = (torch.randn(2, 96, 3, 4) * 20).bfloat16().contiguous(memory_format=fmt).requires_grad_()
    exact = low.detach().double().requires_grad_()  # the same (rounded) inputs
    out, ref = LocalResponseNorm(groups=2)(low), reference_grouped(exact, groups=2)
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=fmt)
    torch.testing.assert_close(out.double(), ref, rtol=1e-2, atol=1e-2)
    g = torch.randn(ref.shape)
    out.backward(g.bfloat16())
    ref.backward(g.bfloat16().double())
    assert low.grad.dtype == torch.bfloat16 and low.grad.is_contiguous(memory_format=fmt)
    torch.testing.assert_close(low.grad.double(), exact.grad, rtol=1e-2, atol=1e-2)


def test_meta_device_for_flop_counting():
    out = LocalResponseNorm()(torch.empty(2, 96, 55, 55, device="meta"))
    assert out.shape == (2, 96, 55, 55) and out.device.type == "meta" and out.dtype == torch.float32
    a = torch.empty(2, 256, 27, 27, device="meta", dtype=torch.bfloat16, requires_grad=True)
    cl = a.contiguous(memory_format=torch.channels_last)
    out = LocalResponseNorm(groups=2)(cl)
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=torch.channels_last)
    out.sum().backward()
    assert a.grad.shape == a.shape and a.grad.dtype == torch.bfloat16


def test_torch_compile_keeps_the_operator_whole():
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    graphs = {"forward": [], "backward": []}

    def record(kind):
        def compiler(gm, _):
            graphs[kind].append(gm)
            return make_boxed_func(gm.forward)

        return compiler

    torch._dynamo.reset()
    lrn = LocalResponseNorm(3, alpha=0.05, groups=2)
    backend = aot_autograd(fw_compiler=record("forward"), bw_compiler=record("backward"))  # aot_eager, recorded
    compiled = torch.compile(lrn, backend=backend, fullgraph=True)  # fullgraph: a graph break would raise
    a = (torch.randn(2, 8, 4, 4) * 3).contiguous(memory_format=torch.channels_last).requires_grad_()
    b = a.detach().clone().requires_grad_()
    out = compiled(a)
    torch.testing.assert_close(out, lrn(b), rtol=0, atol=0)
    g = torch.randn_like(out)
    out.backward(g)
    lrn(b).backward(g)
    torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)

    forward, backward = ([str(n.target) for n in gm.graph.nodes if n.op == "call_function"] for [gm] in graphs.values())
    assert forward.count("alexnet.lrn.default") == 1 and backward.count("alexnet.lrn_backward.default") == 1
    assert not [op for op in forward + backward if op.startswith("aten.")], (forward, backward)


# --- The CPU paths: the C kernel (float32, bfloat16) and the GEMM it falls back to (ALEXNET_LRN_CPU=eager) ---

HAS_COMPILER = bool(os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc"))


@pytest.fixture(params=["kernel", "eager"])
def cpu_path(request, monkeypatch):
    """Each CPU path in turn; the kernel one must really have built where there is a compiler."""
    if request.param == "eager":
        monkeypatch.setenv("ALEXNET_LRN_CPU", "eager")
        monkeypatch.setattr(lrn_cpu, "kernels", lambda: pytest.fail("eager must not build the C kernel"))
    else:
        monkeypatch.delenv("ALEXNET_LRN_CPU", raising=False)
        if not HAS_COMPILER:
            pytest.skip("no C compiler")
        assert lrn_cpu.kernels() is not None
    return request.param


@pytest.fixture
def rebuild_after():
    """For tests that build (or fail to) elsewhere: the next test loads the kernel from the usual cache again."""
    lrn_cpu.kernels.cache_clear()
    yield
    lrn_cpu.kernels.cache_clear()


TOLERANCE = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.bfloat16: dict(rtol=1e-2, atol=1e-2)}


def check_against_float64(x, size, alpha, beta, groups, k=2.0):
    """Values, gradients, dtype and layout of the operators on x against the formula in float64."""
    fmt = torch.channels_last if lrn_module._memory_format(x) == torch.channels_last else torch.contiguous_format
    g = torch.randn(x.shape).to(x.dtype).contiguous(memory_format=fmt)
    exact = x.double().requires_grad_()  # the same (rounded) inputs
    ref = reference_grouped(exact, size, alpha, beta, k, groups)
    (ref_grad,) = torch.autograd.grad(ref, exact, g.double())
    x = x.detach().requires_grad_()
    out = torch.ops.alexnet.lrn(x, size, alpha, beta, k, groups)[0]
    (grad,) = torch.autograd.grad(out, x, g)
    for ours, theirs in ((out, ref), (grad, ref_grad)):
        assert ours.dtype == x.dtype and ours.stride() == x.stride(), (ours.dtype, ours.stride(), x.stride())
        torch.testing.assert_close(ours.double(), theirs, **TOLERANCE[x.dtype])


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpu_paths_against_float64(cpu_path, dtype, channels_last, groups):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    # (channels, size, alpha, scale of the activations): small windows that act, and the paper's on 96 maps
    for c, size, alpha, scale in [(12, 3, 0.05, 3), (96, 5, 1e-4, 40)]:
        x = (torch.randn(2, c, 5, 7) * scale).to(dtype).contiguous(memory_format=fmt)
        check_against_float64(x, size, alpha, 0.75, groups)
        _, saved, _ = torch.ops.alexnet.lrn(x, size, alpha, 0.75, 2.0, groups)
        assert saved.shape == ((0,) if cpu_path == "kernel" else x.shape)  # the kernel's backward recomputes


@pytest.mark.skipif(not HAS_COMPILER, reason="no C compiler")
@pytest.mark.parametrize("channels_last", [False, True])
def test_c_kernel_edge_cases(channels_last):
    """Windows wider than a group, one-map groups, more maps than a tile, odd pixel counts, another beta."""
    assert lrn_cpu.kernels() is not None
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    # (shape, size, groups, alpha, beta)
    for shape, size, groups, alpha, beta in [
        ((2, 7, 3, 5), 9, 1, 0.05, 0.75),
        ((2, 6, 4, 3), 9, 2, 0.05, 0.75),
        ((3, 4, 2, 2), 3, 4, 0.05, 0.75),
        ((2, 12, 3, 3), 1, 2, 0.05, 0.75),
        ((1, 1100, 2, 1), 5, 2, 0.05, 0.75),
        ((3, 8, 13, 11), 5, 2, 0.05, 0.6),
        ((2, 5, 1, 1), 3, 1, 0.5, 1.3),
    ]:
        x = (torch.randn(shape) * 3).contiguous(memory_format=fmt)
        check_against_float64(x, size, alpha, beta, groups)


@pytest.mark.skipif(not HAS_COMPILER, reason="no C compiler")
@pytest.mark.parametrize("channels_last", [False, True])
def test_c_kernel_propagates_nan_and_inf_like_the_formula(channels_last):
    """A NaN spoils its windows only (the GEMM spreads it over the whole group); an overflowing S gives 0."""
    x = torch.randn(2, 16, 5, 4) * 3
    x[0, 3, 1, 1], x[1, 9, 2, 0], x[1, 4, 0, 0] = float("nan"), float("inf"), 1e20  # 1e20^2 overflows float32
    x = x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    g = torch.randn_like(x)
    exact = x.double().requires_grad_()
    ref = reference_grouped(exact, groups=2)
    (ref_grad,) = torch.autograd.grad(ref, exact, g.double())
    a = x.clone().requires_grad_()
    out = torch.ops.alexnet.lrn(a, 5, 1e-4, 0.75, 2.0, 2)[0]
    (grad,) = torch.autograd.grad(out, a, g)
    for ours, theirs in ((out, ref), (grad, ref_grad)):
        assert theirs.isnan().any()
        torch.testing.assert_close(ours.double(), theirs, equal_nan=True, rtol=1e-5, atol=1e-6)


def test_meta_and_fake_tensors_never_build(monkeypatch):
    """FLOP counting runs the model on the meta device: no compiler there."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    monkeypatch.setattr(lrn_cpu, "kernels", lambda: pytest.fail("built the C kernel for a meta tensor"))
    for dtype in (torch.float32, torch.bfloat16):
        a = torch.empty(2, 96, 55, 55, device="meta", dtype=dtype, requires_grad=True)
        out = torch.ops.alexnet.lrn(a, 5, 1e-4, 0.75, 2.0, 2)[0]
        assert out.shape == a.shape
        out.sum().backward()
        assert a.grad.shape == a.shape
    with FakeTensorMode():
        a = torch.empty(2, 256, 27, 27).contiguous(memory_format=torch.channels_last).requires_grad_()
        LocalResponseNorm(groups=2)(a).sum().backward()
        assert a.grad.is_contiguous(memory_format=torch.channels_last)


def test_failed_build_warns_once_and_falls_back_to_the_gemm(monkeypatch, tmp_path, rebuild_after):
    monkeypatch.delenv("ALEXNET_LRN_CPU", raising=False)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))  # an empty cache
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for dtype, fmt in ((torch.float32, torch.contiguous_format), (torch.bfloat16, torch.channels_last)):
            x = (torch.randn(2, 96, 3, 4) * 20).to(dtype).contiguous(memory_format=fmt)
            check_against_float64(x, 5, 1e-4, 0.75, groups=2)
            # What the operators return does not depend on the build: nothing kept, the backward recomputes S.
            assert torch.ops.alexnet.lrn(x, 5, 1e-4, 0.75, 2.0, 2)[1].shape == (0,)
    (warning,) = [str(w.message) for w in caught if "C kernel" in str(w.message)]
    assert "no-such-compiler" in warning and "ALEXNET_LRN_CPU=eager" in warning
    assert lrn_cpu.kernels() is None and not list(tmp_path.rglob("*.so"))


BUILD_OR_LOAD = "from alexnet.model.kernels import lrn_cpu; assert lrn_cpu.kernels() is not None; print('ok')"


@pytest.mark.skipif(not HAS_COMPILER, reason="no C compiler")
def test_fresh_processes_build_once_then_load_from_the_cache(tmp_path):
    """What many short `python train.py` runs see: the first builds into the extensions directory, the next load."""
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    log, wrapper = tmp_path / "builds.log", tmp_path / "cc"
    wrapper.write_text(f'#!/bin/sh\necho built >> "{log}"\nexec {compiler} "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, "CC": str(wrapper), "TORCH_EXTENSIONS_DIR": str(tmp_path / "extensions")}
    env.pop("ALEXNET_LRN_CPU", None)
    for _ in range(2):
        run = subprocess.run(
            [sys.executable, "-c", BUILD_OR_LOAD], env=env, capture_output=True, text=True, timeout=300
        )
        assert run.returncode == 0 and run.stdout.strip() == "ok", run.stdout + run.stderr
        assert log.read_text().splitlines() == ["built"]
    assert len(list((tmp_path / "extensions").rglob("*.so"))) == 1


# --- The Triton kernels (alexnet.model.kernels.lrn_triton): the CUDA path, run here by Triton's interpreter on the CPU ---

TRITON_IN_INTERPRETER = textwrap.dedent(
    """
    import sys
    import torch
    sys.path.insert(0, sys.argv[1])
    from alexnet.model import lrn
    from alexnet.model.kernels import lrn_triton  # no fallback: lrn_triton imports triton, its functions only launch kernels
    from test_lrn import LocalResponseNorm, reference_grouped

    assert type(lrn_triton._lrn_fwd_kernel).__name__ == "InterpretedFunction"  # TRITON_INTERPRET=1 took effect
    launches = []
    launch = lrn_triton._launch
    lrn_triton._launch = lambda kernel, *args: (launches.append(kernel.fn.__name__), launch(kernel, *args))[1]
    torch.manual_seed(0)
    tolerance = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.bfloat16: dict(rtol=1e-2, atol=1e-2)}
    # (channels, size, groups, alpha, scale of the activations), on (2, channels, 3, 4) inputs
    for c, size, groups, alpha, scale in [(5, 5, 1, 0.05, 3), (8, 3, 1, 0.05, 3), (96, 5, 2, 1e-4, 40), (7, 9, 1, 0.05, 3)]:
        for dtype in (torch.float32, torch.bfloat16):
            for fmt in (torch.contiguous_format, torch.channels_last):
                x = (torch.randn(2, c, 3, 4) * scale).to(dtype).contiguous(memory_format=fmt)
                g = torch.randn(x.shape).to(dtype).contiguous(memory_format=fmt)
                exact = x.double().requires_grad_()  # the same (rounded) inputs
                ref = reference_grouped(exact, size, alpha, 0.75, 2.0, groups)
                (ref_grad,) = torch.autograd.grad(ref, exact, g.double())
                y = lrn_triton.forward(x, size, alpha, 0.75, 2.0, groups)
                dx = lrn_triton.backward(g, x, size, alpha, 0.75, 2.0, groups)
                for ours, theirs in ((y, ref), (dx, ref_grad)):
                    assert ours.dtype == dtype and ours.stride() == x.stride(), (ours.dtype, ours.stride(), x.stride())
                    torch.testing.assert_close(ours.double(), theirs, **tolerance[dtype])
    assert launches.count("_lrn_fwd_kernel") == launches.count("_lrn_bwd_kernel") == 16, launches

    # The module on the Triton path, as it runs on CUDA: autograd through both operators, fake kernels, compile.
    lrn._on_triton = lambda x: x.dtype in (torch.float32, torch.bfloat16, torch.float16)
    launches.clear()
    norm = LocalResponseNorm(groups=2)
    x = (torch.randn(2, 96, 3, 3) * 40).bfloat16().contiguous(memory_format=torch.channels_last).requires_grad_()
    exact = x.detach().double().requires_grad_()
    out, (_, scale, scale_pow) = norm(x), torch.ops.alexnet.lrn(x.detach(), 5, 1e-4, 0.75, 2.0, 2)
    assert scale.numel() == scale_pow.numel() == 0  # nothing kept for the backward but x
    assert out.dtype == torch.bfloat16 and out.is_contiguous(memory_format=torch.channels_last)
    ref = reference_grouped(exact, groups=2)
    torch.testing.assert_close(out.double(), ref, **tolerance[torch.bfloat16])
    g = torch.randn(x.shape).bfloat16()
    out.backward(g)
    ref.backward(g.double())
    torch.testing.assert_close(x.grad.double(), exact.grad, **tolerance[torch.bfloat16])
    compiled = torch.compile(norm, backend="aot_eager", fullgraph=True)
    a = x.detach().float().requires_grad_()
    out = compiled(a)
    out.backward(g.float())
    b = a.detach().requires_grad_()
    norm(b).backward(g.float())
    torch.testing.assert_close(out, norm(b), rtol=0, atol=0)
    torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0)
    meta = torch.ops.alexnet.lrn(torch.empty(2, 96, 55, 55, device="meta"), 5, 1e-4, 0.75, 2.0, 2)
    assert [t.shape for t in meta] == [(2, 96, 55, 55), (0,), (0,)]
    assert launches.count("_lrn_fwd_kernel") == 5 and launches.count("_lrn_bwd_kernel") == 3, launches
    print("ok")
    """
)


def test_triton_kernels_in_the_interpreter():
    """The kernels against the formula, fp32 and bf16, NCHW and channels_last, any groups and odd sizes.

    TRITON_INTERPRET=1 must be set before ``@triton.jit`` runs, hence a fresh process.
    """
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    tests = str(Path(__file__).parent)
    run = subprocess.run(
        [sys.executable, "-c", TRITON_IN_INTERPRETER, tests], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip() == "ok", run.stdout + run.stderr


def test_triton_kernels_compile_for_hopper():
    """The interpreter runs Python the compiler may refuse: compile both kernels for sm_90 (no GPU needed)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from alexnet.model.kernels import lrn_triton

    for kernel, pointers in ((lrn_triton._lrn_fwd_kernel, 2), (lrn_triton._lrn_bwd_kernel, 3)):
        for dtype, contiguous in (("bf16", "stride_c"), ("fp32", "stride_p")):  # channels_last, NCHW
            names = kernel.arg_names
            signature = {name: "i32" for name in names} | {name: f"*{dtype}" for name in names[:pointers]}
            signature |= {"alpha": "fp32", "beta": "fp32", "k": "fp32"}
            constants = {"RADIUS": 2, "BLOCK_C": 16, "BLOCK_P": 32, contiguous: 1}  # a unit stride is a constant
            signature |= dict.fromkeys(constants, "constexpr")
            source = ASTSource(kernel, signature, {(names.index(name),): v for name, v in constants.items()})
            compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
            assert "ex2.approx" in compiled.asm["ptx"] and compiled.asm["cubin"]
