"""The CIFAR-10 nets of §3.1 and §3.3 as cuda-convnet's layer files define them, and the locally connected layer."""

import inspect

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from alexnet.errors import ConfigError
from alexnet.model import NETS, CifarConvNet, CifarLocalNet, LocallyConnected2d, build_net, count_parameters


def _loop_reference(layer: LocallyConnected2d, x: torch.Tensor) -> torch.Tensor:
    """Each output position on its own: its patch against its own kernels (the definition, one position at a time)."""
    k, s, size = layer.kernel_size, layer.stride, layer.output_size
    padded = F.pad(x, [layer.padding] * 4)
    kernels = layer.weight.view(size, size, layer.in_channels, k, k, layer.out_channels)
    out = x.new_empty(x.shape[0], layer.out_channels, size, size)
    for y in range(size):
        for x_ in range(size):
            patch = padded[:, :, y * s : y * s + k, x_ * s : x_ * s + k]
            out[:, :, y, x_] = torch.einsum("ncij,cijo->no", patch, kernels[y, x_]) + layer.bias[:, y, x_]
    return out


@pytest.mark.parametrize(("kernel", "stride", "padding", "size"), [(3, 1, 1, 6), (3, 2, 0, 7), (1, 1, 0, 4)])
def test_the_locally_connected_layer_is_its_definition_forward_and_backward(kernel, stride, padding, size):
    torch.manual_seed(0)
    layer = LocallyConnected2d(5, 4, kernel, input_size=size, stride=stride, padding=padding).double()
    x = torch.randn(3, 5, size, size, dtype=torch.double, requires_grad=True)
    torch.testing.assert_close(layer(x), _loop_reference(layer, x))
    grad = torch.randn_like(layer(x))
    ours = torch.autograd.grad(layer(x), (x, layer.weight, layer.bias), grad)
    reference = torch.autograd.grad(_loop_reference(layer, x), (x, layer.weight, layer.bias), grad)
    for a, b in zip(ours, reference, strict=True):
        torch.testing.assert_close(a, b)
    channels_last = x.detach().contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(layer(channels_last), layer(x.detach()))


def test_a_locally_connected_layer_shares_no_kernel_between_positions():
    layer = LocallyConnected2d(2, 3, 3, input_size=4, padding=1)
    assert layer.weight.shape == (16, 2 * 9, 3) and layer.bias.shape == (3, 4, 4)
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.zero_()
        layer.weight[5] = 1.0  # only position (1, 1) sees anything
    out = layer(torch.ones(1, 2, 4, 4))
    assert out[0, :, 1, 1].eq(18).all() and out.count_nonzero() == 3
    with pytest.raises(ValueError, match=r"expects \(N, 2, 4, 4\)"):
        layer(torch.ones(1, 2, 5, 5))


def test_figure_1s_net_is_cuda_convnets_layers_19pct():
    net = CifarConvNet()
    # conv 3-32-32-64 5x5 and fc10 on 64 maps of 4x4: 2,432 + 25,632 + 51,264 + 10,250
    assert count_parameters(net) == 89_578
    names = [name for name, _ in net.named_children()]
    assert names == ["conv1", "pool1", "act1", "conv2", "act2", "pool2", "conv3", "act3", "pool3", "flatten", "fc10"]
    assert isinstance(net.pool1, nn.MaxPool2d) and isinstance(net.pool2, nn.AvgPool2d) and net.pool3.ceil_mode
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert isinstance(CifarConvNet(activation="tanh").act2, nn.Tanh) and isinstance(net.act2, nn.ReLU)
    # cuda-convnet's initW: conv1 N(0, 1e-4), the rest N(0, 1e-2); biases 0
    assert 0.5e-4 < net.conv1.weight.std() < 2e-4 and 0.005 < net.conv3.weight.std() < 0.02
    assert all(layer.bias.abs().sum() == 0 for layer in (net.conv1, net.conv2, net.conv3, net.fc10))
    with pytest.raises(ConfigError, match=r"model\.activation='sigmoid'"):
        CifarConvNet(activation="sigmoid")


def test_the_lrn_net_is_cuda_convnets_layers_conv_local_11pct():
    net, plain = CifarLocalNet(), CifarLocalNet(lrn=False)
    assert net(torch.randn(2, 3, 24, 24)).shape == (2, 10)
    # conv1 4,864, conv2 102,464, local3 36 x (576 x 64) + 64 x 36, local4 36 x (576 x 32) + 32 x 36, fc10 11,530
    assert count_parameters(net) == 4_864 + 102_464 + (1_327_104 + 2_304) + (663_552 + 1_152) + 11_530
    assert count_parameters(plain) == count_parameters(net)
    assert isinstance(plain.norm1, nn.Identity) and not isinstance(net.norm1, nn.Identity)
    # cmrnorm: a / (1 + 0.001 / 9 * sum over 9 maps of a^2) ^ 0.75, which is torch's LocalResponseNorm (alpha / n)
    x = torch.randn(2, 64, 6, 6) * 30
    torch.testing.assert_close(net.norm1(x), nn.LocalResponseNorm(9, alpha=0.001, beta=0.75, k=1.0)(x))
    order = [name for name, _ in net.named_children()]
    assert order[:8] == ["conv1", "act1", "pool1", "norm1", "conv2", "act2", "norm2", "pool2"]
    assert 0.03 < net.local3.weight.std() < 0.05  # initW 0.04


def test_the_nets_give_cuda_convnets_rates_and_weight_costs_per_layer():
    groups = {g["name"]: g for g in CifarLocalNet().param_groups()}
    assert groups["conv1.weight"]["weight_decay"] == 0.0 and groups["local3.weight"]["weight_decay"] == 0.004
    assert groups["fc10.weight"]["weight_decay"] == 0.01
    assert all(g["weight_decay"] == 0.0 and g["lr_scale"] == 2.0 for name, g in groups.items() if "bias" in name)
    net = CifarConvNet()
    assert sum(len(g["params"]) for g in net.param_groups()) == len(list(net.parameters()))
    assert all(g["weight_decay"] == 0.0 for g in net.param_groups())  # Figure 1: no regularization


@pytest.mark.parametrize("name", sorted(NETS))
def test_every_net_is_rebuilt_from_its_name_and_arguments(name):
    net = build_net(name, {"num_classes": 7})
    assert set(net.model_kwargs) == set(inspect.signature(NETS[name]).parameters)  # a new argument must join them
    rebuilt = build_net(name, net.model_kwargs)
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in net.parameters()]
    assert rebuilt(torch.randn(1, 3, net.input_size, net.input_size)).shape == (1, 7)
