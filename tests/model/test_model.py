"""AlexNet's shapes, parameter counts, init and every ablation (alexnet-spec.md)."""

import pytest
import torch
from torch import nn

from alexnet.model import AlexNet, count_parameters
from alexnet.model.lrn import LocalResponseNorm


def test_paper_net_layer_outputs():
    model = AlexNet()
    shapes = {}
    for name in ["conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5", "fc8"]:
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, o.shape[1:]))
    model(torch.randn(1, 3, 227, 227))
    assert shapes == {
        "conv1": (96, 55, 55),
        "pool1": (96, 27, 27),
        "conv2": (256, 27, 27),
        "pool2": (256, 13, 13),
        "conv3": (384, 13, 13),
        "conv4": (384, 13, 13),
        "conv5": (256, 13, 13),
        "pool5": (256, 6, 6),
        "fc8": (1000,),
    }


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [({}, 60_965_224), ({"towers": 1}, 59_798_312), ({"grouped": False}, 62_378_344)],
)
def test_parameter_counts(kwargs, expected):
    assert count_parameters(AlexNet(**kwargs)) == expected


def test_paper_per_layer_counts_and_tower_connectivity():
    model = AlexNet()
    counts = {n: sum(p.numel() for p in m.parameters()) for n, m in model.named_children() if n[:2] in ("co", "fc")}
    assert counts == {
        "conv1": 34_944, "conv2": 307_456, "conv3": 885_120, "conv4": 663_936, "conv5": 442_624,
        "fc6": 37_752_832, "fc7": 16_781_312, "fc8": 4_097_000,
    }  # fmt: skip
    assert [model.conv2.groups, model.conv3.groups, model.conv4.groups, model.conv5.groups] == [2, 1, 2, 2]


def test_state_dict_speaks_the_papers_names():
    names = {k.split(".")[0] for k in AlexNet().state_dict()}
    assert names == {"conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"}


def test_paper_init():
    torch.manual_seed(0)
    model = AlexNet(init="paper")
    for name in ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]:
        layer = getattr(model, name)
        assert layer.weight.mean().abs() < 2e-3
        assert layer.weight.std().item() == pytest.approx(0.01, rel=0.05 if name != "conv1" else 0.1)
        expected_bias = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        assert torch.all(layer.bias == expected_bias), name


def test_caffe_and_kaiming_init():
    caffe = AlexNet(init="caffe")
    assert torch.all(caffe.conv2.bias == 0.1) and torch.all(caffe.conv1.bias == 0)
    kaiming = AlexNet(init="kaiming")
    fan_in = 48 * 5 * 5
    assert kaiming.conv2.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.05)
    assert torch.all(kaiming.fc6.bias == 0)


def test_ablations_change_what_they_name():
    base = AlexNet(num_classes=10)
    assert isinstance(base.norm1, LocalResponseNorm) and isinstance(base.norm2, LocalResponseNorm)
    assert base.norm1.effective_alpha == 1e-4 and base.norm1.k == 2.0

    no_lrn = AlexNet(num_classes=10, lrn=False)
    assert isinstance(no_lrn.norm1, nn.Identity) and isinstance(no_lrn.norm2, nn.Identity)
    assert count_parameters(no_lrn) == count_parameters(base)

    caffe = AlexNet(num_classes=10, lrn_style="caffe")
    assert caffe.norm1.effective_alpha == pytest.approx(2e-5) and caffe.norm1.k == 1.0

    no_overlap = AlexNet(num_classes=10, overlap=False)
    assert (no_overlap.pool1.kernel_size, no_overlap.pool1.stride) == (2, 2)
    assert (base.pool1.kernel_size, base.pool1.stride) == (3, 2)
    pooled = []
    no_overlap.pool5.register_forward_hook(lambda module, inputs, output: pooled.append(output.shape))
    no_overlap(torch.randn(1, 3, 227, 227))
    assert pooled == [(1, 256, 6, 6)]  # 55 -> 27 -> 13 -> 6, as with overlap: fc6 keeps its size

    one_tower = AlexNet(num_classes=10, towers=1)
    assert [one_tower.conv1.out_channels, one_tower.conv4.out_channels, one_tower.conv5.out_channels] == [48, 192, 256]
    assert one_tower.conv2.groups == 1 and one_tower.fc6.in_features == 9216

    ungrouped = AlexNet(num_classes=10, grouped=False)
    assert ungrouped.conv2.groups == ungrouped.conv4.groups == ungrouped.conv5.groups == 1

    no_dropout = AlexNet(num_classes=10, dropout=0.0)
    assert no_dropout.drop6.p == 0.0 and base.drop6.p == base.drop7.p == 0.5
    x = torch.randn(2, 3, 227, 227)
    no_dropout.train()
    torch.testing.assert_close(no_dropout(x), no_dropout(x))  # nothing random left in training mode

    tanh = AlexNet(num_classes=10, activation="tanh")
    acts = [type(m) for n, m in tanh.named_children() if n.startswith("act")]
    assert acts == [nn.Tanh] * 7


def test_dropout_only_in_training():
    model = AlexNet(num_classes=10, init="kaiming")
    x = torch.randn(2, 3, 227, 227)
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    model.train()
    assert not torch.allclose(model(x), model(x))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"towers": 3}, r"model.towers=3 .* allowed values: \[1, 2\]"),
        ({"activation": "gelu"}, r"model.activation='gelu' .* \['relu', 'tanh'\]"),
        ({"init": "xavier"}, r"model.init='xavier'"),
        ({"dropout": 1.5}, r"model.dropout=1.5"),
    ],
)
def test_invalid_values_name_key_and_allowed_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AlexNet(**kwargs)


def test_model_kwargs_are_every_constructor_argument_and_rebuild_the_net():
    import inspect

    model = AlexNet(num_classes=7, towers=1, lrn_style="caffe", dropout=0.2, init="kaiming")
    assert set(model.model_kwargs) == set(inspect.signature(AlexNet).parameters)  # a new argument must join them
    rebuilt = AlexNet(**model.model_kwargs)
    assert [(n, type(m)) for n, m in rebuilt.named_children()] == [(n, type(m)) for n, m in model.named_children()]
    assert rebuilt.num_classes == 7 and rebuilt.norm1.effective_alpha == model.norm1.effective_alpha


def test_towers_gather_where_the_paper_joins_them():
    from alexnet.parallel import gather_points

    assert gather_points(AlexNet()) == ["conv3", "fc6", "drop6", "drop7"]  # dropout on both towers' units
