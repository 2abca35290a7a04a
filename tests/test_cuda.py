"""What only a GPU can check; benchmarks/gpu_check.sh runs these (``pytest -m cuda``). Skipped without CUDA.

On CPU the same code paths are tested elsewhere: the Triton LRN under TRITON_INTERPRET=1
(test_lrn.py), device decoding with the CPU as the device (test_prepare.py).
"""

import pytest
import torch
from test_lrn import reference_lrn

from alexnet.data.transforms import BatchTransform, PCALighting, RandomCropFlip, SubtractMean
from alexnet.model.lrn import LocalResponseNorm

pytestmark = pytest.mark.cuda


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("groups", [1, 2])
def test_lrn_on_cuda_matches_the_formula(dtype, channels_last, groups):
    a = torch.randn(8, 96, 27, 27, dtype=torch.float64) * 30
    g = torch.randn_like(a)
    ref_in = a.clone().requires_grad_()
    halves = ref_in.chunk(groups, 1)
    ref = torch.cat([reference_lrn(h) for h in halves], 1)
    ref.backward(g)
    x = a.to("cuda", dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    out = LocalResponseNorm(groups=groups)(x)
    assert out.dtype == dtype and out.is_contiguous(memory_format=torch.channels_last) == channels_last
    out.backward(g.to("cuda", dtype))
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 2e-2}
    torch.testing.assert_close(out.double().cpu(), ref.detach(), **tolerance)
    torch.testing.assert_close(x.grad.double().cpu(), ref_in.grad, **tolerance)


def test_the_batch_transform_on_cuda_equals_the_cpu():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 256, 256), dtype=torch.uint8)
    samples = torch.utils.data.default_collate([RandomCropFlip(0.1)(image) for image in images])
    transform = BatchTransform(SubtractMean(torch.rand(3, 256, 256)), PCALighting())
    on_cpu = transform(samples)
    on_cuda = transform({k: v.cuda() for k, v in samples.items()})
    torch.testing.assert_close(on_cuda.cpu(), on_cpu, rtol=1e-5, atol=1e-3)


def test_nvjpeg_decodes_like_the_cpu(tmp_path):
    import io

    from PIL import Image

    from alexnet.data.transforms import decode_batch

    def encode_jpeg(image: torch.Tensor) -> torch.Tensor:  # as alexnet.data.prepare writes its shards
        encoded = io.BytesIO()
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(encoded, "JPEG", quality=95)
        return torch.frombuffer(bytearray(encoded.getvalue()), dtype=torch.uint8)

    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8).repeat_interleave(8, 2).repeat_interleave(8, 3)
    jpegs = [encode_jpeg(image) for image in images]
    on_gpu, on_cpu = decode_batch(jpegs, torch.device("cuda")), decode_batch(jpegs, torch.device("cpu"))
    assert on_gpu.is_cuda and on_gpu.shape == on_cpu.shape == (4, 3, 256, 256)
    assert (on_gpu.cpu().float() - on_cpu.float()).abs().mean() < 1.0


def test_a_compiled_training_step_with_fused_sgd_learns():
    from alexnet.model import AlexNet

    torch.manual_seed(0)
    model = AlexNet(num_classes=10, init="kaiming").cuda().to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, fused=True)
    step = torch.compile(model)
    x = torch.randn(32, 3, 227, 227, device="cuda").contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (32,), device="cuda")
    losses = []
    for _ in range(15):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(step(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.8, losses
