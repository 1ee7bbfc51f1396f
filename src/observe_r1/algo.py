"""Group-level maths of Observe-R1 (METHOD.md §4-§5) as pure tensor functions over ``(num_groups, G)``.

Nothing here knows about TRL, processes or devices: tensors stay where they arrive. The trainer gathers whole
groups, calls :func:`group_advantages`, and keeps its own slice.
"""

from __future__ import annotations

import torch


def shortest_correct_bonus(
    correct: torch.Tensor, lengths: torch.Tensor, coef: float = 0.2, min_length: float = 100
) -> torch.Tensor:
    """Bonus for the most concise correct response of each group (METHOD.md §4).

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
    """Uncertainty weight ``f(d) = 4·σ·d·(1 − d)`` of a group with pass rate ``d`` (METHOD.md §5).

    Peaks at ``σ`` for d = ½, zero for all-correct and all-wrong groups. For G = 8 and σ = 1.8:
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
) -> torch.Tensor:
    """Observe-R1 advantages of ``(n, G)`` grouped rollouts.

    ``r' = r + bonus`` (if ``use_bonus``), ``Â = (r' − mean_g r') / (std_g r' + eps)`` with the unbiased std,
    then ``Â · f(mean_g correct)`` (if ``use_dyna_weight``). Groups whose shaped rewards are all equal get
    exactly 0. Correctness comes from ``correct`` (the accuracy reward), never from the shaped total.

    Args:
        rewards: ``(n, G)`` float, weighted rule rewards (1.0·acc + 0.5·fmt in the paper).
        correct: ``(n, G)`` bool.
        lengths: ``(n, G)`` generated tokens per response.
    Returns:
        ``(n, G)`` float advantages.
    """
    assert rewards.shape == correct.shape == lengths.shape, "rewards, correct and lengths must all be (n, G)"
    assert rewards.shape[1] > 1, "GRPO needs at least 2 responses per group"
    shaped = rewards.float()
    if use_bonus:
        shaped = shaped + shortest_correct_bonus(correct, lengths, bonus_coef, bonus_min_length)
    advantages = (shaped - shaped.mean(dim=1, keepdim=True)) / (shaped.std(dim=1, keepdim=True) + eps)
    constant = (shaped == shaped[:, :1]).all(dim=1, keepdim=True)
    advantages = torch.where(constant, torch.zeros_like(advantages), advantages)
    if use_dyna_weight:
        advantages = advantages * dynamic_weight(correct.float().mean(dim=1, keepdim=True), sigma)
    return advantages
