import torch

from hf_vq import VectorQuantizer
from hf_vq.metrics import divergence
from hf_vq.quantization.kmeans import kmeans


def blobs(n=600, k=12, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g) * 6 + 3
    return centers[torch.randint(k, (n,), generator=g)] + 0.3 * torch.randn(n, d, generator=g)


def test_kmeans_init_lowers_quantization_error_versus_random_init():
    z = blobs()
    random_vq = VectorQuantizer(5, 16)
    km_vq = VectorQuantizer(5, 16, kmeans_init=True)
    out_random, out_km = random_vq(z), km_vq(z)
    assert bool(km_vq.initialized)
    # the first training batch is already quantized with the k-means codebook
    assert out_km.commitment < 0.1 * out_random.commitment
    assert divergence(z, km_vq.codebook) < 0.1 * divergence(z, random_vq.codebook)


def test_kmeans_runs_only_on_the_first_training_batch():
    vq = VectorQuantizer(5, 16, kmeans_init=True)
    vq(blobs(seed=1))
    codes = vq.codebook_signal.detach().clone()
    vq.eval()
    vq(blobs(seed=2) + 100)
    assert torch.equal(codes, vq.codebook_signal.detach())


def test_kmeans_with_fewer_vectors_than_codes_keeps_every_code():
    z = torch.randn(5, 3)
    centers = kmeans(z, 20, iters=3)
    assert centers.shape == (20, 3) and torch.isfinite(centers).all()
    # every data vector is a center, so the quantization error of the data is ~0
    assert torch.cdist(z, centers).min(1).values.max() < 1e-5
    vq = VectorQuantizer(3, 20, kmeans_init=True)
    out = vq(z)
    assert vq.codebook_signal.shape == (20, 3) and out.commitment < 1e-4


def test_kmeans_lloyd_reduces_error_versus_seeding_only():
    z = blobs(n=2000, k=40, seed=3)
    seeded = kmeans(z, 40, iters=0, generator=torch.Generator().manual_seed(0))
    refined = kmeans(z, 40, iters=10, generator=torch.Generator().manual_seed(0))
    assert divergence(z, refined) <= divergence(z, seeded)
