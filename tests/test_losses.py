"""Losses against hand-computed values, properties and the other codebases' conventions."""

import pytest
import torch

import nstlib
from nstlib.losses import content_loss, gram_matrix, style_loss, total_variation


def test_gram_of_a_hand_computed_tensor():
    # C=2 channels, H=1, W=3: F = [[1, 2, 3], [0, 1, -1]]
    f = torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, -1.0]]).reshape(1, 2, 1, 3)
    # F F^T = [[1+4+9, 0+2-3], [.., 0+1+1]] = [[14, -1], [-1, 2]], divided by C*H*W = 6
    expected = torch.tensor([[[14.0, -1.0], [-1.0, 2.0]]]) / 6
    torch.testing.assert_close(gram_matrix(f), expected)


def test_gram_matches_einsum_and_is_symmetric_psd():
    torch.manual_seed(0)
    f = torch.randn(3, 5, 4, 6, dtype=torch.double)
    g = gram_matrix(f)
    torch.testing.assert_close(g, torch.einsum("bchw,bdhw->bcd", f, f) / (5 * 4 * 6))
    torch.testing.assert_close(g, g.transpose(1, 2))
    assert torch.linalg.eigvalsh(g).min() > -1e-12


def test_gram_is_invariant_to_pixel_permutation():
    torch.manual_seed(1)
    f = torch.randn(1, 8, 5, 7)
    perm = torch.randperm(35)
    shuffled = f.reshape(1, 8, 35)[:, :, perm].reshape(1, 8, 5, 7)
    torch.testing.assert_close(gram_matrix(shuffled), gram_matrix(f))
    assert not torch.allclose(shuffled, f)


def test_content_loss_is_mean_squared_error():
    a = torch.zeros(1, 2, 2, 2)
    b = torch.full((1, 2, 2, 2), 3.0)
    assert content_loss(a, b).item() == pytest.approx(9.0)  # (3^2 * 8) / 8
    torch.manual_seed(2)
    x, y = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(content_loss(x, y), torch.nn.functional.mse_loss(x, y))
    # batch-1 targets broadcast over the batch
    torch.testing.assert_close(content_loss(x, y[:1]), ((x - y[:1]) ** 2).mean())


def test_style_loss_is_squared_frobenius_distance():
    torch.manual_seed(3)
    f = torch.randn(1, 4, 3, 3)
    target = torch.randn(4, 4)
    expected = torch.linalg.matrix_norm(gram_matrix(f)[0] - target, "fro") ** 2
    torch.testing.assert_close(style_loss(f, target), expected)
    assert style_loss(f, gram_matrix(f)).item() == 0.0


def test_style_loss_averages_over_the_batch():
    torch.manual_seed(4)
    f = torch.randn(3, 4, 3, 3)
    target = torch.randn(1, 4, 4)
    per_image = [style_loss(f[i : i + 1], target) for i in range(3)]
    torch.testing.assert_close(style_loss(f, target), sum(per_image) / 3)


def test_scale_factor_to_pytorch_tutorial_convention():
    # Tutorial: G = F F^T / (a*b*c*d) with a=batch=1, loss = mse_loss(G, A) (mean over C^2 entries).
    torch.manual_seed(5)
    c = 6
    f, s = torch.randn(1, c, 5, 5, dtype=torch.double), torch.randn(1, c, 5, 5, dtype=torch.double)

    def tutorial_gram(x):
        a, b, h, w = x.size()
        feats = x.view(a * b, h * w)
        return torch.mm(feats, feats.t()).div(a * b * h * w)

    tutorial = torch.nn.functional.mse_loss(tutorial_gram(f), tutorial_gram(s))
    torch.testing.assert_close(tutorial, style_loss(f, gram_matrix(s)) / c**2)


def test_scale_factor_to_gatys_convention():
    # Gatys et al. 2016, eq. 4: E = 1/(4 N^2 M^2) sum_ij (G_ij - A_ij)^2 with raw Grams.
    torch.manual_seed(6)
    n, h, w = 5, 4, 3
    f, s = torch.randn(1, n, h, w, dtype=torch.double), torch.randn(1, n, h, w, dtype=torch.double)
    m = h * w
    raw = lambda x: x.reshape(n, m) @ x.reshape(n, m).T  # noqa: E731
    gatys = ((raw(f) - raw(s)) ** 2).sum() / (4 * n**2 * m**2)
    torch.testing.assert_close(gatys, style_loss(f, gram_matrix(s)) / 4)


def test_total_variation_hand_computed_and_constant():
    assert total_variation(torch.full((1, 3, 5, 5), 0.7)).item() == 0.0
    # one row [0, 1, 0]: horizontal diffs 1, -1 -> mean 1; no vertical pairs in 1 row -> use 2 rows
    img = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]).reshape(1, 1, 2, 3)
    # vertical diffs all 0; horizontal diffs squared: [1, 1] per row -> mean 1
    assert total_variation(img).item() == pytest.approx(1.0)
    img2 = torch.tensor([[0.0, 0.0], [2.0, 2.0]]).reshape(1, 1, 2, 2)
    assert total_variation(img2).item() == pytest.approx(4.0)


def test_losses_reject_bad_shapes_with_clear_messages():
    with pytest.raises(ValueError, match="4-D"):
        gram_matrix(torch.zeros(3, 4, 4))
    with pytest.raises(ValueError, match="target_gram"):
        style_loss(torch.zeros(1, 3, 2, 2), torch.zeros(4, 4))
    with pytest.raises(ValueError, match="content target"):
        content_loss(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="too small"):
        total_variation(torch.zeros(1, 3, 1, 4))


def test_top_level_names_compute_hand_computed_values():
    # through nstlib's top-level names, as the notebooks call them
    # F: C=2, H=1, W=3, rows [1, 2, 3] and [0, 1, -1]; G = [[14, -1], [-1, 2]] / 6 (see above)
    f = torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, -1.0]]).reshape(1, 2, 1, 3)
    # style loss against a zero target: (14^2 + 1 + 1 + 2^2) / 6^2 = 202 / 36
    assert nstlib.style_loss(f, torch.zeros(2, 2)).item() == pytest.approx(202 / 36)
    # content loss against zeros: (1 + 4 + 9 + 0 + 1 + 1) / 6 = 16 / 6
    assert nstlib.content_loss(f, torch.zeros_like(f)).item() == pytest.approx(16 / 6)
    torch.testing.assert_close(nstlib.gram_matrix(f), torch.tensor([[[14.0, -1.0], [-1.0, 2.0]]]) / 6)
    # [[0, 1], [3, 5]]: vertical differences 3, 4 -> mean of squares 12.5; horizontal 1, 2 -> 2.5
    assert nstlib.total_variation(torch.tensor([[0.0, 1.0], [3.0, 5.0]]).reshape(1, 1, 2, 2)).item() == pytest.approx(15.0)
