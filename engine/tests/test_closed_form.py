"""(a) EntroPO-DPO reaches the closed-form optimum pi* ∝ pi_ref^(beta/alpha) exp(u/alpha) in a tabular
multi-step MDP trained on Bradley–Terry pairs; lambda = 0 reaches DPO's optimum instead; EntroPO-KTO
moves probability the same way. The losses are the engine's own functions."""

import torch
from entropo_engine.losses import entropo_dpo_loss, entropo_kto_loss, kto_reference_point
from tabular import TabularMDP, closed_form_optimum, fit, sample_bt_pairs, total_variation

BETA, LAM = 0.5, 0.5


def make_problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mdp = TabularMDP(n_actions=2, horizon=3)
    ref_logits = torch.randn(mdp.n_states, mdp.n_actions, generator=g)
    ref_logps = mdp.trajectory_logps(ref_logits)
    utility = 2.0 * torch.rand(len(mdp.trajectories), generator=g)
    return mdp, ref_logps, utility, g


def train_dpo(mdp, ref_logps, chosen, rejected, beta, lam):
    # The mean loss over a million pairs equals the count-weighted mean over the distinct (chosen, rejected)
    # pairs, which is much cheaper to optimise.
    n = len(mdp.trajectories)
    counts = torch.bincount(chosen * n + rejected, minlength=n * n).to(torch.float32)
    pair = torch.nonzero(counts).squeeze(1)
    weights = counts[pair] / counts.sum()
    c, r = pair // n, pair % n

    def loss(logits):
        logps = mdp.trajectory_logps(logits)
        per_pair = entropo_dpo_loss(logps[c], logps[r], ref_logps[c], ref_logps[r], beta, lam)
        return (weights * per_pair).sum()

    return torch.exp(mdp.trajectory_logps(fit(loss, (mdp.n_states, mdp.n_actions), steps=1500, lr=0.05)))


def fit_on_bt_pairs(seed: int, lam: float):
    """Trains on a million Bradley–Terry pairs drawn uniformly; returns the learned policy and both optima."""
    mdp, ref_logps, utility, g = make_problem(seed)
    uniform = torch.full((len(mdp.trajectories),), 1 / len(mdp.trajectories))
    chosen, rejected = sample_bt_pairs(uniform, utility, 1_000_000, g)
    learned = train_dpo(mdp, ref_logps, chosen, rejected, BETA, lam)
    entropo_target = closed_form_optimum(ref_logps, utility, BETA, LAM)
    dpo_target = closed_form_optimum(ref_logps, utility, BETA, 0.0)  # pi_ref * exp(u / beta)
    return learned, entropo_target, dpo_target


def test_entropo_dpo_converges_to_closed_form():
    learned, target, dpo_target = fit_on_bt_pairs(seed=0, lam=LAM)
    tv = total_variation(learned, target)
    print(f"EntroPO-DPO: TV to closed form = {tv:.4f}; TV between EntroPO and DPO optima = {total_variation(target, dpo_target):.3f}")
    assert tv <= 0.02
    # The test is only meaningful if the two optima are far apart.
    assert total_variation(target, dpo_target) > 0.1


def test_lambda_zero_converges_to_dpo_optimum():
    learned, entropo_target, dpo_target = fit_on_bt_pairs(seed=1, lam=0.0)
    tv = total_variation(learned, dpo_target)
    print(f"DPO (lambda=0): TV to pi_ref*exp(u/beta) = {tv:.4f}; TV to EntroPO optimum = {total_variation(learned, entropo_target):.3f}")
    assert tv <= 0.02
    assert total_variation(learned, entropo_target) > 0.1


def test_entropo_kto_moves_probability_towards_the_optimum():
    mdp, ref_logps, utility, g = make_problem(seed=2)
    n = len(mdp.trajectories)
    ref = torch.exp(ref_logps)
    # Desirable/undesirable labels drawn from a logistic model of the utility around its mean.
    samples = torch.multinomial(torch.full((n,), 1 / n), 200_000, replacement=True, generator=g)
    desirable = torch.rand(len(samples), generator=g) < torch.sigmoid(4 * (utility[samples] - utility.mean()))

    def loss(logits):
        logps = mdp.trajectory_logps(logits)
        # z0 from trajectories that are not tied to the labelled examples ("mismatched"), drawn from pi itself.
        mismatched = torch.multinomial(torch.exp(logps).detach(), 4096, replacement=True, generator=g)
        z0 = kto_reference_point(logps[mismatched], ref_logps[mismatched], BETA, LAM)
        return entropo_kto_loss(logps[samples], ref_logps[samples], desirable, z0, BETA, LAM).mean()

    learned = torch.exp(mdp.trajectory_logps(fit(loss, (mdp.n_states, mdp.n_actions), steps=300, lr=0.05)))
    target = closed_form_optimum(ref_logps, utility, BETA, LAM)
    moved = torch.log(learned / ref)
    wanted = torch.log(target / ref)
    corr = float(torch.corrcoef(torch.stack([moved, wanted]))[0, 1])
    print(f"EntroPO-KTO: TV(pi_ref, pi*) = {total_variation(ref, target):.3f} -> TV(pi_kto, pi*) = {total_variation(learned, target):.3f}; corr(log-ratio) = {corr:.3f}")
    expected_u = {name: float((p * utility).sum()) for name, p in [("ref", ref), ("kto", learned), ("opt", target)]}
    print(f"EntroPO-KTO: expected utility {expected_u}")
    assert corr > 0.8
    assert (expected_u["kto"] - expected_u["ref"]) * (expected_u["opt"] - expected_u["ref"]) > 0
