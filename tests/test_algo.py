import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from observe_r1.algo import dynamic_weight, group_advantages, shortest_correct_bonus


def test_dynamic_weight_table_for_g8():
    # docs/method.md §5, sigma = 1.8
    expected = torch.tensor([0, 0.7875, 1.35, 1.6875, 1.8, 1.6875, 1.35, 0.7875, 0])
    got = dynamic_weight(torch.arange(9) / 8, sigma=1.8)
    assert torch.allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize(
    "correct, lengths, expected",
    [
        ([1, 1, 0, 1], [150, 120, 90, 130], [0, 0.2, 0, 0]),  # shortest correct is index 1 (90 is wrong)
        ([1, 1, 0, 1], [150, 100, 90, 130], [0, 0, 0, 0]),  # shortest correct = 100, not > 100: nobody
        ([0, 0, 0, 0], [150, 120, 200, 130], [0, 0, 0, 0]),  # all wrong: nobody (reference paid index 0)
        ([1, 0, 1, 1], [120, 50, 120, 130], [0.2, 0, 0, 0]),  # tie on 120: first index
        ([0, 0, 0, 1], [10, 10, 10, 101], [0, 0, 0, 0.2]),  # the only correct one, just above the floor
    ],
)
def test_shortest_correct_bonus_table(correct, lengths, expected):
    bonus = shortest_correct_bonus(torch.tensor([correct]).bool(), torch.tensor([lengths]), coef=0.2, min_length=100)
    assert torch.allclose(bonus, torch.tensor([expected], dtype=torch.float))


def _slow_reference(rewards, correct, lengths, use_bonus, use_dyna, coef=0.2, floor=100, sigma=1.8, eps=1e-4):
    """Loop version of docs/method.md §4-§5, one group at a time."""
    out = []
    for r, c, n in zip(rewards.tolist(), correct.tolist(), lengths.tolist(), strict=True):
        r = list(r)
        if use_bonus and any(c):
            best = min((n[i], i) for i in range(len(r)) if c[i])
            if best[0] > floor:
                r[best[1]] += coef
        mean = sum(r) / len(r)
        std = (sum((x - mean) ** 2 for x in r) / (len(r) - 1)) ** 0.5
        adv = [0.0] * len(r) if len(set(r)) == 1 else [(x - mean) / (std + eps) for x in r]
        p = sum(c) / len(c)  # pass rate
        w = 4 * sigma * p * (1 - p) if use_dyna else 1.0
        out.append([a * w for a in adv])
    return torch.tensor(out)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("use_bonus, use_dyna", [(True, True), (False, True), (True, False), (False, False)])
def test_group_advantages_matches_loop_reference(seed, use_bonus, use_dyna):
    g = torch.Generator().manual_seed(seed)
    n, G = 16, 8
    correct = torch.rand(n, G, generator=g) < 0.5
    fmt = torch.rand(n, G, generator=g) < 0.8
    rewards = correct.float() + 0.5 * fmt.float()
    lengths = torch.randint(60, 200, (n, G), generator=g)
    got = group_advantages(rewards, correct, lengths, use_bonus=use_bonus, use_dyna_weight=use_dyna)
    want = _slow_reference(rewards, correct, lengths, use_bonus, use_dyna)
    assert torch.allclose(got.advantages, want, atol=1e-5)
    # what is returned for logging is what was used
    assert torch.equal(got.pass_rate, correct.float().mean(dim=1))
    expected_bonus = shortest_correct_bonus(correct, lengths) if use_bonus else torch.zeros(n, G)
    assert torch.equal(got.bonus, expected_bonus)
    expected_weight = dynamic_weight(got.pass_rate) if use_dyna else torch.ones(n)
    assert torch.equal(got.weight, expected_weight)


def test_all_equal_groups_get_exact_zero():
    rewards = torch.full((3, 8), 0.1)  # 0.1 * 8 / 8 is not exactly 0.1 in floating point
    correct = torch.zeros(3, 8, dtype=torch.bool)
    adv = group_advantages(rewards, correct, torch.full((3, 8), 150), use_dyna_weight=False).advantages
    assert torch.equal(adv, torch.zeros(3, 8))


def test_correctness_is_not_read_from_shaped_reward():
    # same rewards, different correctness: the weight (and the bonus) must follow `correct`
    rewards = torch.tensor([[1.5, 1.5, 0.5, 0.5]])
    lengths = torch.tensor([[150, 160, 170, 180]])
    a = group_advantages(rewards, torch.tensor([[True, True, False, False]]), lengths)
    b = group_advantages(rewards, torch.tensor([[True, False, False, False]]), lengths)
    assert not torch.allclose(a.advantages, b.advantages)
    assert a.pass_rate.item() == 0.5 and b.pass_rate.item() == 0.25


group_shapes = st.tuples(st.integers(1, 6), st.integers(2, 9))


@settings(max_examples=60, deadline=None)
@given(shape=group_shapes, seed=st.integers(0, 2**31 - 1), floor=st.integers(0, 200))
def test_bonus_properties(shape, seed, floor):
    g = torch.Generator().manual_seed(seed)
    correct = torch.rand(shape, generator=g) < 0.4
    lengths = torch.randint(0, 300, shape, generator=g)
    bonus = shortest_correct_bonus(correct, lengths, coef=0.2, min_length=floor)
    assert ((bonus > 0).sum(dim=1) <= 1).all()  # at most once per group
    assert not (bonus.bool() & ~correct).any()  # only to a correct response
    paid_lengths = lengths[bonus > 0]
    assert (paid_lengths > floor).all()


@settings(max_examples=60, deadline=None)
@given(shape=group_shapes, seed=st.integers(0, 2**31 - 1))
def test_advantages_zero_mean_and_finite(shape, seed):
    g = torch.Generator().manual_seed(seed)
    correct = torch.rand(shape, generator=g) < 0.5
    rewards = correct.float() + 0.5 * (torch.rand(shape, generator=g) < 0.7).float()
    lengths = torch.randint(0, 300, shape, generator=g)
    adv = group_advantages(rewards, correct, lengths, use_dyna_weight=False).advantages
    assert torch.isfinite(adv).all()
    assert torch.allclose(adv.mean(dim=1), torch.zeros(shape[0]), atol=1e-5)
    weighted = group_advantages(rewards, correct, lengths).advantages
    assert torch.isfinite(weighted).all()
