"""(b) At lambda = 0 EntroPO-DPO is exactly the standard sigmoid DPO loss; EntroPO-KTO's reference point
is not clamped."""

import torch
import torch.nn.functional as F
from entropo_engine.losses import dpo_loss, entropo_dpo_loss, entropo_kto_loss, kto_reference_point


def random_logps(n: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [-50 * torch.rand(n, generator=g, dtype=torch.float64) for _ in range(4)]


def test_lambda_zero_is_standard_dpo():
    pc, pr, rc, rr = random_logps(64, 0)
    for beta in (0.01, 0.1, 0.5):
        ours = entropo_dpo_loss(pc, pr, rc, rr, beta=beta, lam=0.0)
        reference = -F.logsigmoid(beta * ((pc - rc) - (pr - rr)))
        assert torch.allclose(ours, reference, atol=1e-12, rtol=0)
        assert torch.allclose(ours, dpo_loss(pc, pr, rc, rr, beta), atol=1e-12, rtol=0)


def test_lambda_positive_differs_from_dpo():
    pc, pr, rc, rr = random_logps(64, 1)
    assert not torch.allclose(entropo_dpo_loss(pc, pr, rc, rr, 0.1, 0.01), dpo_loss(pc, pr, rc, rr, 0.1))


def test_entropo_dpo_gradient_matches_formula():
    # d L / d log pi(tau+) = -alpha * sigma(-h), where h is the EntroPO margin.
    pc, pr, rc, rr = (t[:1].clone() for t in random_logps(1, 2))
    pc.requires_grad_(True)
    beta, lam = 0.1, 0.01
    loss = entropo_dpo_loss(pc, pr, rc, rr, beta, lam).sum()
    loss.backward()
    alpha = beta + lam
    h = alpha * (pc.detach() - pr) - beta * (rc - rr)
    assert torch.allclose(pc.grad, -alpha * torch.sigmoid(-h), atol=1e-12)


def test_kto_reference_point_is_detached_and_may_be_negative():
    policy = torch.tensor([-40.0, -30.0], requires_grad=True)
    reference = torch.tensor([-5.0, -6.0])
    z0 = kto_reference_point(policy, reference, beta=0.1, lam=0.01)
    assert not z0.requires_grad
    assert float(z0) < 0  # KTO would clamp its KL estimate to 0; EntroPO must not.
    expected = float((policy.detach() - (0.1 / 0.11) * reference).mean())
    assert abs(float(z0) - expected) < 1e-5


def test_kto_loss_matches_formula_per_label():
    policy = torch.tensor([-10.0, -12.0], dtype=torch.float64)
    reference = torch.tensor([-11.0, -11.5], dtype=torch.float64)
    desirable = torch.tensor([True, False])
    z0 = torch.tensor(-0.5, dtype=torch.float64)
    beta, lam, wd, wu = 0.1, 0.05, 1.0, 1.33
    alpha = beta + lam
    r = policy - (beta / alpha) * reference
    loss = entropo_kto_loss(policy, reference, desirable, z0, beta, lam, wd, wu)
    assert abs(float(loss[0]) - wd * (1 - float(torch.sigmoid(alpha * (r[0] - z0))))) < 1e-12
    assert abs(float(loss[1]) - wu * (1 - float(torch.sigmoid(alpha * (z0 - r[1]))))) < 1e-12
