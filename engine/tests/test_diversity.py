"""(d) Diversity in miniature: on the same preference data, EntroPO (lambda > 0) ends with higher policy
entropy than DPO (lambda = 0) and higher pass@k at large k.

The setting mirrors the paper's pipeline: 200 tabular multi-step tasks, 16 rollouts per task from the
reference (SFT) policy, every (resolved, unresolved) rollout pair becomes a preference pair, and the
oracle is imperfect (each trajectory's verdict is flipped with probability 0.2, as flaky or incomplete
tests do). pass@k is measured against the true success set. With a perfect oracle both methods tie on
pass@k (the utility is then known exactly and sharpening costs nothing); the gain comes from not
collapsing onto trajectories the noisy data happened to favour.
"""

import torch
from entropo_engine.losses import entropo_dpo_loss
from tabular import TabularMDP, pass_at_k

BETA = 0.1
KS = (1, 4, 16, 64)


def preference_data(seed: int, n_tasks: int = 200, rollouts: int = 16, flip: float = 0.2):
    g = torch.Generator().manual_seed(seed)
    mdp = TabularMDP(n_actions=2, horizon=3)
    n = len(mdp.trajectories)
    ref_logits = 1.5 * torch.randn(n_tasks, mdp.n_states, mdp.n_actions, generator=g)
    success = torch.zeros(n_tasks, n, dtype=torch.bool)
    for t in range(n_tasks):
        success[t, torch.randperm(n, generator=g)[:2]] = True
    ref = torch.exp(mdp.trajectory_logps(ref_logits))
    task, chosen, rejected = [], [], []
    for t in range(n_tasks):
        sampled = torch.multinomial(ref[t], rollouts, replacement=True, generator=g).tolist()
        verdict = {i: bool(success[t, i]) ^ bool(torch.rand(1, generator=g) < flip) for i in set(sampled)}
        for w in (i for i in sampled if verdict[i]):
            for l in (i for i in sampled if not verdict[i]):
                task.append(t), chosen.append(w), rejected.append(l)
    return mdp, ref_logits, success, torch.tensor(task), torch.tensor(chosen), torch.tensor(rejected)


def train_and_measure(mdp, ref_logits, success, task, chosen, rejected, lam: float, steps: int = 300):
    ref_logps = mdp.trajectory_logps(ref_logits)
    logits = ref_logits.clone().requires_grad_(True)  # start from the reference (SFT) policy
    opt = torch.optim.Adam([logits], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        logps = mdp.trajectory_logps(logits)
        entropo_dpo_loss(
            logps[task, chosen], logps[task, rejected], ref_logps[task, chosen], ref_logps[task, rejected], BETA, lam
        ).mean().backward()
        opt.step()
    p = torch.exp(mdp.trajectory_logps(logits.detach()))
    entropy = float(-(p * p.log()).sum(-1).mean())
    p_success = (p * success).sum(-1)
    return entropy, {k: float(pass_at_k(p_success, k).mean()) for k in KS}


def test_entropo_keeps_more_entropy_and_wins_pass_at_large_k():
    for seed in (0, 1, 2):
        data = preference_data(seed)
        h_dpo, pk_dpo = train_and_measure(*data, lam=0.0)
        h_ent, pk_ent = train_and_measure(*data, lam=0.1)
        fmt = lambda pk: " ".join(f"pass@{k}={v:.3f}" for k, v in pk.items())  # noqa: E731
        print(f"\nseed {seed}: DPO      entropy={h_dpo:.3f} {fmt(pk_dpo)}")
        print(f"seed {seed}: EntroPO  entropy={h_ent:.3f} {fmt(pk_ent)}  (beta={BETA}, lambda=0.1)")
        assert h_ent > h_dpo + 0.01
        assert pk_ent[16] > pk_dpo[16]
        assert pk_ent[64] > pk_dpo[64] + 0.005
