"""ADMM on a tiny synthetic problem: exact sparsity, falling residual, masks that hold."""

import torch
import torch.nn.functional as F
from torch import nn

from admm_hls.compress.admm import ADMM
from admm_hls.compress.masking import MaskSet
from admm_hls.compress.projection import project_topk, topk_mask
from admm_hls.compress.training import StageHooks, train_stage
from admm_hls.datasets import Split


def _regression():
    g = torch.Generator().manual_seed(0)
    true = torch.zeros(8, 40)
    signs = torch.where(torch.rand(30, generator=g) < 0.5, -1.0, 1.0)
    true.view(-1)[torch.randperm(320, generator=g)[:30]] = signs * (0.5 + torch.rand(30, generator=g))
    x = torch.randn(512, 40, generator=g)
    return x, x @ true.T, true


def test_admm_reaches_exact_sparsity_with_falling_residual():
    x, y, true = _regression()
    layer = nn.Linear(40, 8, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.linalg.lstsq(x, y).solution.T + 0.3 * torch.randn(8, 40))
    k = 30
    admm = ADMM({"w": layer.weight}, lambda n, v: project_topk(v, k), {"w": 0.05})
    # Z starts as the projection of W, U as zero.
    assert int((admm.Z["w"] != 0).sum()) == k and not admm.U["w"].any()
    opt = torch.optim.Adam(layer.parameters(), lr=0.01)
    residuals = []
    for _ in range(12):
        for _ in range(60):
            loss = F.mse_loss(layer(x), y) + admm.penalty()
            opt.zero_grad()
            loss.backward()
            opt.step()
        admm.update()
        residuals.append(admm.residuals()["w"])
        admm.scale_rho(1.3)
    assert residuals[-1] < residuals[0] / 4, residuals
    mask = topk_mask(layer.weight, k)
    assert int(mask.sum()) == k
    # ADMM found the true support.
    assert torch.equal(mask, true != 0)


def test_penalty_is_squared_frobenius_and_has_no_gradient_through_z_u():
    w = nn.Parameter(torch.tensor([[3.0, -4.0]]))
    admm = ADMM({"w": w}, lambda n, v: torch.zeros_like(v), {"w": 2.0})
    admm.U["w"] += 1.0
    p = admm.penalty()
    assert torch.isclose(p, torch.tensor(0.5 * 2.0 * ((3 + 1) ** 2 + (-4 + 1) ** 2)))
    p.backward()
    assert torch.allclose(w.grad, 2.0 * (w.detach() + 1.0))
    assert not admm.Z["w"].requires_grad and not admm.U["w"].requires_grad


def test_masks_survive_retraining_with_momentum_and_weight_decay():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3))
    weights = {"1": model[1].weight, "3": model[3].weight}
    masks = {n: topk_mask(w, w.numel() // 5) for n, w in weights.items()}
    ms = MaskSet(weights, masks)
    ms.apply()
    data = Split(torch.randn(256, 1, 4, 4), torch.randint(0, 3, (256,)))
    from admm_hls.compress.training import OptimizerSpec

    for opt in (OptimizerSpec("sgd", lr=0.1, momentum=0.9, weight_decay=1e-3), OptimizerSpec("adam", lr=0.01)):
        train_stage(model, data, 3, opt, 32, torch.Generator().manual_seed(0),
                    StageHooks(before_step=[ms.mask_gradients], after_step=[ms.apply]))
        for n, w in weights.items():
            assert torch.equal(w != 0, masks[n])
