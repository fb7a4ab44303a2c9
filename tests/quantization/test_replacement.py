import pytest
import torch

from hf_vq import VectorQuantizer

CORNERS = torch.tensor([[0.0, 0], [10, 0], [0, 10], [10, 10], [-10, 0], [0, -10], [-10, -10], [20, 20]])


def make(replace_after=3, **kw):
    vq = VectorQuantizer(2, 8, replace_after=replace_after, **kw)
    with torch.no_grad():
        vq.codebook_signal.copy_(CORNERS)
    return vq


def batch(step):
    # always hits codes 0 and 1; hits code 2 only at step 0
    rows = [[0.1, 0.0], [10.0, 0.2]] + ([[0.0, 10.1]] if step == 0 else [])
    return torch.tensor(rows)


def test_lru_replaces_exactly_the_idle_codes():
    torch.manual_seed(0)
    vq = make(replace_after=3)
    history = []
    for step in range(6):
        before = vq.codebook_signal.detach().clone()
        vq(batch(step))
        changed = (vq.codebook_signal.detach() != before).any(1).nonzero().squeeze(1).tolist()
        history.append((changed, vq.last_replaced.tolist()))
    # codes 3..7 were idle for 3 steps after steps 0,1,2: replaced at the start of step 3's forward.
    # code 2 (last hit at step 0) reaches 3 idle steps after step 3: replaced at step 4.
    assert [h[0] for h in history] == [[], [], [], [3, 4, 5, 6, 7], [2], []]
    assert [h[1] for h in history] == [[], [], [], [3, 4, 5, 6, 7], [2], []]
    # codes in use never move
    assert torch.equal(vq.codebook_signal.detach()[:2], CORNERS[:2])


def test_replacement_vectors_are_current_embeddings_plus_small_noise():
    torch.manual_seed(1)
    vq = make(replace_after=1, replace_noise=0.01)
    vq(torch.tensor([[0.1, 0.0]]))
    z = torch.tensor([[3.0, 4.0], [3.0, 4.0], [0.0, 0.1]])
    vq(z)
    replaced = vq.codebook_signal.detach()[vq.last_replaced]
    dist = torch.cdist(replaced, z).min(1).values
    assert len(vq.last_replaced) == 7 and dist.max() < 0.1


@pytest.mark.parametrize("covariance,theta", [
    ("diagonal", torch.tensor([[2.0, 2.0]])),                    # effective scale 3
    ("full", torch.tensor([[[1.0, 0.5], [-0.3, 2.0]]])),         # W = I + Θ, not diagonal
])
def test_replaced_code_lands_on_the_vector_through_a_non_identity_affine(covariance, theta):
    torch.manual_seed(2)
    vq = make(replace_after=1, replace_noise=0.0, affine="learnable", affine_covariance=covariance)
    with torch.no_grad():
        vq.affine.scale.copy_(theta)
        vq.affine.bias.fill_(-1.0)
    vq(torch.tensor([[-3.0, -3.0]]))
    target = torch.tensor([[7.0, -2.0]])
    vq(target)
    assert len(vq.last_replaced) > 0
    assert torch.allclose(vq.codebook[vq.last_replaced], target.expand(len(vq.last_replaced), 2), atol=1e-5)


def test_replacement_resets_stale_optimizer_state():
    torch.manual_seed(3)
    vq = make(replace_after=2)
    opt = torch.optim.Adam(vq.parameters(), lr=0.1)
    vq.attach_optimizer(opt)
    for step in range(2):
        opt.zero_grad()
        vq(batch(1) + 0.1 * torch.randn(2, 2)).loss.backward()
        opt.step()
    state = opt.state[vq.codebook_signal]
    assert state["exp_avg_sq"][2:].abs().min() == 0  # idle codes got no gradient...
    with torch.no_grad():  # ...so give every row a stale moment to be reset
        state["exp_avg"].add_(1.0)
        state["exp_avg_sq"].add_(1.0)
    vq(batch(1))  # the third step's forward replaces codes 2..7 first
    replaced = vq.last_replaced
    assert replaced.tolist() == [2, 3, 4, 5, 6, 7]
    assert state["exp_avg"][replaced].abs().max() == 0 and state["exp_avg_sq"][replaced].abs().max() == 0
    kept = torch.tensor([0, 1])
    assert state["exp_avg_sq"][kept].abs().min() > 0


def test_lru_state_survives_a_checkpoint():
    vq = make(replace_after=3)
    for step in range(3):
        vq(batch(1))
    assert vq.last_replaced.tolist() == []
    fresh = make(replace_after=3)
    fresh.load_state_dict(vq.state_dict())
    fresh(batch(1))
    assert fresh.last_replaced.tolist() == [2, 3, 4, 5, 6, 7]
