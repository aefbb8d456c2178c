"""SAM: the optimizer's two passes equal a straightforward reference written here from the SAM paper."""

from __future__ import annotations

import copy

import torch
from torch import nn

from unmask.train.sam import SAM


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 2))


def _loss(model, x, y):
    return nn.functional.cross_entropy(model(x), y)


def test_sam_matches_reference_sgd():
    x = torch.randn(16, 5, generator=torch.Generator().manual_seed(1))
    y = (x[:, 0] > 0).long()
    rho, lr = 0.05, 0.1
    model = _model()
    ref = copy.deepcopy(model)
    opt = SAM(model.parameters(), torch.optim.SGD, rho=rho, lr=lr)
    for _ in range(3):
        # the optimizer under test
        opt.zero_grad()
        _loss(model, x, y).backward()
        opt.first_step()
        opt.zero_grad()
        _loss(model, x, y).backward()
        opt.second_step()
        # reference: w_adv = w + rho g / ||g||; w <- w - lr * grad L(w_adv)
        params = list(ref.parameters())
        grads = torch.autograd.grad(_loss(ref, x, y), params)
        norm = torch.sqrt(sum((g**2).sum() for g in grads))
        saved = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.add_(rho * g / norm)
        grads_adv = torch.autograd.grad(_loss(ref, x, y), params)
        with torch.no_grad():
            for p, w, g in zip(params, saved, grads_adv):
                p.copy_(w - lr * g)
    for a, b in zip(model.parameters(), ref.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    # and SAM is not plain SGD: the perturbation changed the update
    plain = _model()
    sgd = torch.optim.SGD(plain.parameters(), lr=lr)
    for _ in range(3):
        sgd.zero_grad()
        _loss(plain, x, y).backward()
        sgd.step()
    assert not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(model.parameters(), plain.parameters()))


def test_sam_restores_weights_exactly_before_the_base_step():
    model = _model()
    x, y = torch.randn(4, 5), torch.tensor([0, 1, 0, 1])
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.5, lr=0.0)  # lr 0: the step must change nothing
    before = [p.detach().clone() for p in model.parameters()]
    _loss(model, x, y).backward()
    opt.first_step()
    assert not all(torch.equal(a, b) for a, b in zip(model.parameters(), before))
    opt.zero_grad()
    _loss(model, x, y).backward()
    opt.second_step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), before))


def test_sam_state_round_trip_keeps_momentum():
    model = _model()
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
    x, y = torch.randn(4, 5), torch.tensor([0, 1, 0, 1])
    _loss(model, x, y).backward()
    opt.first_step()
    opt.zero_grad()
    _loss(model, x, y).backward()
    opt.second_step()
    state = opt.state_dict()
    opt2 = SAM(_model().parameters(), torch.optim.SGD, rho=0.05, lr=0.1, momentum=0.9)
    opt2.load_state_dict(state)
    bufs = [s["momentum_buffer"] for s in opt2.base_optimizer.state.values()]
    assert len(bufs) == 4 and all(b.abs().sum() > 0 for b in bufs)
