"""Group-level maths of Observe-R1 (docs/method.md §4-§5) as pure tensor functions over ``(num_groups, G)``.

Nothing here knows about TRL, processes or devices: tensors stay where they arrive. The trainer gathers whole
groups, calls :func:`group_advantages`, keeps its own slice and logs the bonus, weight and pass rate it returns.

Naming: the *pass rate* ``p`` of a group is the fraction of its responses that are correct. The ladder's
*difficulty* is the opposite quantity, ``1 − p`` over the rating samples. The dynamic weight is symmetric,
``f(p) = f(1 − p)``, so the paper's formula reads the same with either.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class GroupAdvantages(NamedTuple):
    """What :func:`group_advantages` computed, so that what is logged is what was used."""

    advantages: torch.Tensor  # (n, G) float
    bonus: torch.Tensor  # (n, G) float, the shortest-correct bonus added to the rewards (zeros when off)
    weight: torch.Tensor  # (n,) float, the dynamic weight of each group (ones when off)
    pass_rate: torch.Tensor  # (n,) float, fraction of correct responses per group


def shortest_correct_bonus(
    correct: torch.Tensor, lengths: torch.Tensor, coef: float = 0.2, min_length: float = 100
) -> torch.Tensor:
    """Bonus for the most concise correct response of each group (docs/method.md §4).

    Among the correct responses of a group, the shortest (first index on ties) gets ``coef``, but only if its
    length is strictly greater than ``min_length``; otherwise nobody in the group gets it. A group with no
    correct response gets nothing (the reference code paid response 0 there).

    Args:
        correct: ``(n, G)`` bool, accuracy of each response.
        lengths: ``(n, G)`` int or float, generated tokens of each response.
    Returns:
        ``(n, G)`` float bonus to add to the rewards; at most one non-zero entry per row.

    >>> shortest_correct_bonus(torch.tensor([[True, True, False]]), torch.tensor([[150, 120, 90]]))
    tensor([[0.0000, 0.2000, 0.0000]])
    """
    assert correct.shape == lengths.shape, f"correct {tuple(correct.shape)} vs lengths {tuple(lengths.shape)}"
    masked = torch.where(correct, lengths.float(), torch.full_like(lengths, float("inf"), dtype=torch.float))
    shortest = masked.argmin(dim=1)  # first index of the minimum on ties
    shortest_len = masked.gather(1, shortest[:, None]).squeeze(1)
    paid = correct.any(dim=1) & (shortest_len > min_length)
    bonus = torch.zeros(correct.shape, dtype=torch.float, device=correct.device)
    bonus[paid, shortest[paid]] = coef
    return bonus


def dynamic_weight(pass_rate: torch.Tensor, sigma: float = 1.8) -> torch.Tensor:
    """Uncertainty weight ``f(p) = 4·σ·p·(1 − p)`` of a group with pass rate ``p`` (docs/method.md §5).

    Peaks at ``σ`` for p = ½, zero for all-correct and all-wrong groups. For G = 8 and σ = 1.8:
    0, .7875, 1.35, 1.6875, 1.8, 1.6875, 1.35, .7875, 0.

    >>> dynamic_weight(torch.tensor([0.0, 0.25, 0.5]))
    tensor([0.0000, 1.3500, 1.8000])
    """
    return 4.0 * sigma * pass_rate * (1.0 - pass_rate)


def group_advantages(
    rewards: torch.Tensor,
    correct: torch.Tensor,
    lengths: torch.Tensor,
    *,
    use_bonus: bool = True,
    bonus_coef: float = 0.2,
    bonus_min_length: float = 100,
    use_dyna_weight: bool = True,
    sigma: float = 1.8,
    eps: float = 1e-4,
) -> GroupAdvantages:
    """Observe-R1 advantages of ``(n, G)`` grouped rollouts.

    ``r' = r + bonus`` (if ``use_bonus``), ``Â = (r' − mean_g r') / (std_g r' + eps)`` with the unbiased std,
    then ``Â · f(p)``, ``p = mean_g correct`` (if ``use_dyna_weight``). Groups whose shaped rewards are all equal
    get exactly 0. Correctness comes from ``correct`` (the accuracy reward), never from the shaped total.

    Args:
        rewards: ``(n, G)`` float, weighted rule rewards (1.0·acc + 0.5·fmt in the paper).
        correct: ``(n, G)`` bool.
        lengths: ``(n, G)`` generated tokens per response.
    Returns:
        :class:`GroupAdvantages`: the ``(n, G)`` advantages with the bonus, weight and pass rate used.

    >>> out = group_advantages(torch.tensor([[1.5, 0.5]]), torch.tensor([[True, False]]), torch.tensor([[9, 9]]))
    >>> out.advantages, out.weight, out.pass_rate
    (tensor([[ 1.2726, -1.2726]]), tensor([1.8000]), tensor([0.5000]))
    """
    assert rewards.shape == correct.shape == lengths.shape, "rewards, correct and lengths must all be (n, G)"
    assert rewards.shape[1] > 1, "GRPO needs at least 2 responses per group"
    pass_rate = correct.float().mean(dim=1)
    if use_bonus:
        bonus = shortest_correct_bonus(correct, lengths, bonus_coef, bonus_min_length)
    else:
        bonus = torch.zeros(rewards.shape, dtype=torch.float, device=rewards.device)
    shaped = rewards.float() + bonus
    advantages = (shaped - shaped.mean(dim=1, keepdim=True)) / (shaped.std(dim=1, keepdim=True) + eps)
    constant = (shaped == shaped[:, :1]).all(dim=1, keepdim=True)
    advantages = torch.where(constant, torch.zeros_like(advantages), advantages)
    weight = dynamic_weight(pass_rate, sigma) if use_dyna_weight else torch.ones_like(pass_rate)
    return GroupAdvantages(advantages * weight[:, None], bonus, weight, pass_rate)
