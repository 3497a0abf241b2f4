"""EntroPO losses as short pure functions of sequence log-probabilities.

Every trajectory-level quantity here is a *sum of token log-probs over the assistant turns* of a
trajectory (system, user and tool-observation tokens are masked out before these functions are
called; see `logprobs.py`). Shapes are `(batch,)` unless a docstring says otherwise.

Notation (DESIGN.md §6, paper §3.2 and appendix C):
    beta   weight of the cross-entropy to the reference policy
    lam    entropy bonus (lambda >= 0)
    alpha  = lam + beta
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_nll(token_logps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SFT loss: mean negative log-likelihood of the kept (assistant) tokens.

        L = - sum_t m_t * log pi(y_t | y_<t) / sum_t m_t

    `token_logps` and `mask` have the same shape; `mask` is 1 for assistant tokens.
    """
    mask = mask.to(token_logps.dtype)
    return -(token_logps * mask).sum() / mask.sum().clamp_min(1.0)


def implicit_reward(
    policy_logps: torch.Tensor, reference_logps: torch.Tensor, beta: float, lam: float
) -> torch.Tensor:
    """EntroPO implicit reward, scaled by alpha (paper eq. 6/7):

        alpha * r(tau) = alpha * log pi_theta(tau) - beta * log pi_ref(tau),   alpha = lam + beta

    With lam = 0 this is DPO's beta * log(pi_theta / pi_ref).
    """
    alpha = lam + beta
    return alpha * policy_logps - beta * reference_logps


def entropo_dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    beta: float,
    lam: float,
) -> torch.Tensor:
    """EntroPO-DPO loss per pair (paper eq. 6):

        L = -log sigma( alpha * [log pi(tau+) - log pi(tau-)] - beta * [log pi_ref(tau+) - log pi_ref(tau-)] )

    Its optimum is pi*(tau) ∝ pi_ref(tau)^(beta/alpha) * exp(u(tau)/alpha). With lam = 0 (alpha = beta)
    it is exactly the standard sigmoid DPO loss with temperature beta. Returns shape `(batch,)`.
    """
    logits = implicit_reward(policy_chosen_logps, reference_chosen_logps, beta, lam) - implicit_reward(
        policy_rejected_logps, reference_rejected_logps, beta, lam
    )
    return -F.logsigmoid(logits)


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Standard sigmoid DPO (Rafailov et al. 2023), written out independently of EntroPO:

        L = -log sigma( beta * [log(pi(tau+)/pi_ref(tau+)) - log(pi(tau-)/pi_ref(tau-))] )
    """
    chosen = policy_chosen_logps - reference_chosen_logps
    rejected = policy_rejected_logps - reference_rejected_logps
    return -F.logsigmoid(beta * (chosen - rejected))


def kto_reference_point(
    mismatched_policy_logps: torch.Tensor, mismatched_reference_logps: torch.Tensor, beta: float, lam: float
) -> torch.Tensor:
    """EntroPO-KTO reference point z0, a scalar (paper eq. 8, appendix C).

        z0 = mean over mismatched (prompt_i, completion_j) of  log pi(y_j|x_i) - (beta/alpha) * log pi_ref(y_j|x_i)

    This estimates -H(pi) + (beta/alpha) * H(pi, pi_ref). It is detached (no gradient flows through the
    reference point) and, unlike KTO's KL estimate, NOT clamped at 0: it may be negative.
    """
    alpha = lam + beta
    r = mismatched_policy_logps - (beta / alpha) * mismatched_reference_logps
    return r.mean().detach()


def entropo_kto_loss(
    policy_logps: torch.Tensor,
    reference_logps: torch.Tensor,
    desirable: torch.Tensor,
    z0: torch.Tensor,
    beta: float,
    lam: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> torch.Tensor:
    """EntroPO-KTO loss per trajectory (paper eq. 8):

        r(tau) = log pi(tau) - (beta/alpha) * log pi_ref(tau)
        desirable:    lambda+ - lambda+ * sigma(alpha * (r - z0))
        undesirable:  lambda- - lambda- * sigma(alpha * (z0 - r))

    `desirable` is a bool tensor; `z0` comes from `kto_reference_point`. With lam = 0 this is KTO with an
    unclamped reference point. Returns shape `(batch,)`.
    """
    alpha = lam + beta
    r = policy_logps - (beta / alpha) * reference_logps
    desirable_loss = desirable_weight * (1 - torch.sigmoid(alpha * (r - z0)))
    undesirable_loss = undesirable_weight * (1 - torch.sigmoid(alpha * (z0 - r)))
    return torch.where(desirable, desirable_loss, undesirable_loss)


def verifier_loss(yes_logp: torch.Tensor, no_logp: torch.Tensor, resolved: torch.Tensor) -> torch.Tensor:
    """Verifier objective: binary cross-entropy of the YES/NO answer after the judged trajectory.

        p(YES) = exp(l_yes) / (exp(l_yes) + exp(l_no))
        L = -[ y * log p(YES) + (1 - y) * log p(NO) ],   y = 1 if the trajectory resolved the task

    `yes_logp`/`no_logp` are the model's log-probs of the YES and NO answer tokens at the answer position.
    Normalising over the two answers matches how the selector reads the verifier (DESIGN.md §7).
    """
    log_norm = torch.logaddexp(yes_logp, no_logp)
    y = resolved.to(yes_logp.dtype)
    return -(y * (yes_logp - log_norm) + (1 - y) * (no_logp - log_norm))
