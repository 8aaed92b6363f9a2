import math

import pytest
import torch

from lightning_discrete.metrics import (
    ActiveUnits,
    CodebookPerplexity,
    CodebookUsage,
    DeadCodeFraction,
    active_units,
    codebook_perplexity,
    codebook_usage,
    dead_code_fraction,
    dead_fraction_from_counts,
    entropy_from_counts,
    joint_index,
    perplexity_from_counts,
)


def _by_hand(counts):
    total = sum(counts)
    h = -sum(c / total * math.log(c / total) for c in counts if c > 0)
    return math.exp(h)


@pytest.mark.parametrize("counts", [[5, 5, 0, 0], [1, 2, 3, 4], [7, 0, 0, 0], [3, 1, 0, 9, 2, 2, 2, 1]])
def test_perplexity_is_exp_entropy(counts):
    got = perplexity_from_counts(torch.tensor(counts))
    assert got.dtype == torch.float64
    assert float(got) == pytest.approx(_by_hand(counts), rel=1e-12)
    assert float(entropy_from_counts(torch.tensor(counts))) == pytest.approx(math.log(_by_hand(counts)), abs=1e-12)


def test_perplexity_rows_uniform_and_empty():
    counts = torch.tensor([[4, 4, 4, 4], [0, 0, 0, 0], [2, 0, 2, 0]])
    got = perplexity_from_counts(counts)
    assert got[0] == pytest.approx(4.0)
    assert torch.isnan(got[1])
    assert got[2] == pytest.approx(2.0)
    assert perplexity_from_counts(counts.T, dim=0)[2] == pytest.approx(2.0)
    assert float(dead_fraction_from_counts(counts[2])) == 0.5


def test_joint_index():
    idx = torch.tensor([[0, 0], [1, 0], [0, 1], [3, 2]])
    assert joint_index(idx, 4).tolist() == [0, 1, 4, 11]


def test_codebook_usage_counts_by_hand():
    m = CodebookUsage(num_codes=3, num_latents=2)
    a = torch.tensor([[0, 1], [0, 2], [1, 1]])
    b = torch.tensor([[0, 1], [2, 1]])
    m.update(a)
    m.update(b)
    out = m.compute()
    # latent 0: counts [3, 1, 1]; latent 1: [0, 4, 1]
    assert m.counts.tolist() == [[3, 1, 1], [0, 4, 1]]
    expected = (_by_hand([3, 1, 1]) + _by_hand([4, 1])) / 2
    assert float(out["perplexity"]) == pytest.approx(expected, rel=1e-12)
    assert float(out["dead_fraction"]) == pytest.approx(1 / 6)
    # joint codes (l0 + 3 l1): 3, 6, 4, 3, 5 -> counts {3: 2, 4: 1, 5: 1, 6: 1}
    assert float(out["joint_perplexity"]) == pytest.approx(_by_hand([2, 1, 1, 1]), rel=1e-12)
    assert float(out["joint_used"]) == 4
    # updating in pieces equals one update of the concatenation
    m2 = CodebookUsage(3, 2)
    m2.update(torch.cat([a, b]))
    assert torch.equal(m2.counts, m.counts) and torch.equal(m2.joint_counts, m.joint_counts)


def test_codebook_usage_joint_limit_and_shapes():
    m = CodebookUsage(num_codes=2, num_latents=20, joint_limit=1024)
    assert not m.track_joint
    m.update(torch.zeros(3, 20, dtype=torch.long))
    out = m.compute()
    assert "joint_perplexity" not in out and float(out["perplexity"]) == 1.0
    assert float(out["dead_fraction"]) == 0.5
    with pytest.raises(ValueError, match="shape"):
        m.update(torch.zeros(3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="num_codes"):
        CodebookUsage(1)
    single = CodebookUsage(5)
    single.update(torch.tensor([0, 1, 1, 4]))
    assert not single.track_joint
    assert float(single.compute()["perplexity"]) == pytest.approx(_by_hand([1, 2, 1]))


@pytest.mark.parametrize("k", [2, 3, 5])
def test_codebook_counts_equal_bincount_reference(k):
    """Both update paths (column sums for k = 2, a scatter otherwise) count exactly."""
    g = torch.Generator().manual_seed(k)
    batches = [torch.randint(0, k, (n, 4), generator=g) for n in (7, 1, 12)]
    m = CodebookUsage(num_codes=k, num_latents=4)
    for b in batches:
        m.update(b)
    allb = torch.cat(batches)
    expected = torch.stack([torch.bincount(allb[:, l], minlength=k) for l in range(4)])
    assert torch.equal(m.counts, expected)
    assert int(m.total) == 20


def test_functional_twins_equal_one_update_of_the_class():
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 5, (30, 3), generator=g)
    for fn, cls in ((codebook_perplexity, CodebookPerplexity), (dead_code_fraction, DeadCodeFraction)):
        metric = cls(num_codes=5, num_latents=3)
        metric.update(idx[:10])
        metric.update(idx[10:])
        assert torch.equal(metric.compute(), fn(idx, num_codes=5))
    usage = CodebookUsage(num_codes=5, num_latents=3)
    usage.update(idx)
    assert usage.compute() == codebook_usage(idx, num_codes=5)
    assert float(codebook_perplexity(torch.tensor([0, 1, 2, 3]), num_codes=4)) == pytest.approx(4.0)
    assert float(dead_code_fraction(torch.tensor([[0, 0], [0, 0]]), num_codes=2)) == 0.5


def test_higher_is_better_points_the_right_way():
    assert CodebookPerplexity.higher_is_better is True
    assert DeadCodeFraction.higher_is_better is False
    assert CodebookUsage.higher_is_better is None  # several values, pointing different ways
    assert ActiveUnits.higher_is_better is None


def test_active_units_counts_above_threshold():
    grads = torch.tensor([[0.5, -0.01, 0.0], [-2.0, 0.2, 0.05]])
    assert float(active_units(grads, 0.1)) == pytest.approx(50.0)
    assert float(active_units(grads, torch.tensor(0.04))) == pytest.approx(100 * 4 / 6)
    metric = ActiveUnits()
    metric.update(grads[0], 0.1)
    metric.update(grads[1], 0.1)
    metric.update(torch.zeros(4), 0.1)
    assert float(metric.compute()) == pytest.approx(100 * 3 / 10)
    assert int(metric.total) == 10


def test_functional_errors_name_the_argument():
    with pytest.raises(ValueError, match="num_codes"):
        codebook_perplexity(torch.tensor([0, 1]), num_codes=1)
    with pytest.raises(ValueError, match="indices"):
        codebook_usage(torch.zeros(2, 2, 2, dtype=torch.long), num_codes=3)
