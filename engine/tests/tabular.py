"""A tabular, deterministic multi-step MDP for checking the EntroPO losses against their closed form.

State s_h is the history of actions so far (a tree), so a trajectory is a tuple of H actions and
log pi(tau) = sum_h log pi(a_h | s_h): exactly the "sum over assistant turns" the real trainer uses.
The policy is a table of logits, one row per non-terminal state.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch


@dataclass
class TabularMDP:
    n_actions: int
    horizon: int

    def __post_init__(self) -> None:
        self.trajectories = list(itertools.product(range(self.n_actions), repeat=self.horizon))
        prefixes = sorted({t[:h] for t in self.trajectories for h in range(self.horizon)}, key=lambda p: (len(p), p))
        self.state_index = {p: i for i, p in enumerate(prefixes)}
        # (trajectory, step) -> row of the logits table, and the action taken there.
        self.rows = torch.tensor([[self.state_index[t[:h]] for h in range(self.horizon)] for t in self.trajectories])
        self.actions = torch.tensor(self.trajectories)

    @property
    def n_states(self) -> int:
        return len(self.state_index)

    def trajectory_logps(self, logits: torch.Tensor) -> torch.Tensor:
        """log pi(tau) for every trajectory, as the sum of per-step log-probs.
        logits: (..., n_states, n_actions) -> (..., n_traj)."""
        step_logps = torch.log_softmax(logits, dim=-1)[..., self.rows, self.actions]  # (..., n_traj, H)
        return step_logps.sum(dim=-1)


def closed_form_optimum(ref_logps: torch.Tensor, utility: torch.Tensor, beta: float, lam: float) -> torch.Tensor:
    """pi*(tau) ∝ pi_ref(tau)^(beta/alpha) * exp(u(tau)/alpha)."""
    alpha = beta + lam
    return torch.softmax((beta / alpha) * ref_logps + utility / alpha, dim=0)


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * float((p - q).abs().sum())


def entropy(p: torch.Tensor) -> float:
    p = p[p > 0]
    return float(-(p * p.log()).sum())


def pass_at_k(success_prob: float, k: int) -> float:
    """Probability that at least one of k independent samples succeeds."""
    return 1.0 - (1.0 - success_prob) ** k


def sample_bt_pairs(
    behaviour: torch.Tensor, utility: torch.Tensor, n_pairs: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw (i, j) from the behaviour policy and label them with the Bradley–Terry model
    P(i ≻ j) = sigma(u_i - u_j). Returns (chosen, rejected) trajectory indices."""
    i = torch.multinomial(behaviour, n_pairs, replacement=True, generator=generator)
    j = torch.multinomial(behaviour, n_pairs, replacement=True, generator=generator)
    keep = i != j
    i, j = i[keep], j[keep]
    i_wins = torch.rand(len(i), generator=generator) < torch.sigmoid(utility[i] - utility[j])
    return torch.where(i_wins, i, j), torch.where(i_wins, j, i)


def fit(loss_fn, n_params_shape, steps: int, lr: float) -> torch.Tensor:
    """Full-batch optimisation of a logits table with Adam; returns the final table."""
    logits = torch.zeros(n_params_shape, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(logits)
        loss.backward()
        opt.step()
    return logits.detach()
