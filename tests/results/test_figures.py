"""The figures' arithmetic: where a curve reaches 25%, the speed-up, the nearest neighbours of Figure 4."""

import pytest
import torch

from alexnet.model import AlexNet
from alexnet.results.figures import crossing, nearest_neighbours, speedup


def test_crossing_interpolates_between_epochs():
    assert crossing([0, 1, 2, 3], [0.9, 0.5, 0.3, 0.2]) == pytest.approx(2.5)  # 0.3 -> 0.2 passes 0.25 halfway
    assert crossing([0, 1], [0.2, 0.1]) == 0  # already there
    assert crossing([0, 1, 2], [0.9, 0.5, 0.3]) is None  # never


def test_speedup_in_words():
    assert speedup(1.0, 6.0, 10.0) == "ReLU at 1.00 epochs, tanh at 6.00: 6.0x sooner"
    # tanh never got there: a lower bound
    assert speedup(2.0, None, 10.0, "minutes") == "ReLU at 2.00 minutes, tanh not within 10.00: more than 5.0x sooner"
    assert speedup(None, 3.0, 10.0) == "ReLU did not reach 25%"
    assert speedup(4.1, None, 3.9, "minutes") == "ReLU at 4.10 minutes, tanh not within its 3.90: no bound"


def test_nearest_neighbours_over_batches_equal_a_full_search():
    torch.manual_seed(0)
    keys = torch.randn(100, 16)
    queries = torch.cat([keys[[7, 42]] + 1e-3, torch.randn(1, 16)])  # two near-copies of known keys
    distances, indices = nearest_neighbours(queries, keys.split(13), k=6)  # in uneven batches
    assert indices[:2, 0].tolist() == [7, 42] and (distances[:2, 0] < 1e-2).all()
    full = torch.cdist(queries.double(), keys.double()).topk(6, largest=False)
    assert torch.equal(indices, full.indices) and torch.allclose(distances, full.values)
    assert (distances.diff(dim=1) >= 0).all()  # nearest first


def test_nearest_neighbours_with_fewer_keys_than_asked():
    distances, indices = nearest_neighbours(torch.zeros(1, 2), [torch.tensor([[3.0, 4.0], [1.0, 0.0]])], k=6)
    assert indices.tolist() == [[1, 0]] and distances.tolist() == [[1.0, 5.0]]


def test_last_hidden_is_fc7_after_its_relu():
    model = AlexNet(num_classes=10).eval()
    x = torch.randn(2, 3, 227, 227)
    hidden = model.last_hidden(x)  # (2, 4096)
    assert hidden.shape == (2, 4096) and (hidden >= 0).all()
    with torch.no_grad():
        assert torch.allclose(model.fc8(hidden), model(x), atol=1e-5)  # fc8 of it is the net's output
