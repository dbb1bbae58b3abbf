"""Colour-preserving transfer: YIQ against the published NTSC matrices, luminance matching by its formula."""

import pytest
import torch

from nstlib import color

# NTSC YIQ as published (e.g. Gonzalez & Woods, Digital Image Processing, and Gatys et al. 2017's
# colour-preservation recipe): RGB -> YIQ and its published inverse, each rounded to 3 decimals.
PUBLISHED_RGB_TO_YIQ = [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]]
PUBLISHED_YIQ_TO_RGB = [[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]]


def pixel(r, g, b):
    return torch.tensor([r, g, b], dtype=torch.float64).view(1, 3, 1, 1)


def test_pixels_by_hand():
    # pure red is the first column of the matrix; white and greys have no chrominance (rows 2 and 3 sum to 0)
    torch.testing.assert_close(color.rgb_to_yiq(pixel(1, 0, 0)).flatten(), torch.tensor([0.299, 0.596, 0.211], dtype=torch.float64))
    torch.testing.assert_close(color.rgb_to_yiq(pixel(1, 1, 1)).flatten(), torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(color.rgb_to_yiq(pixel(0.3, 0.3, 0.3)).flatten(), torch.tensor([0.3, 0.0, 0.0], dtype=torch.float64))
    # Y of (0.2, 0.4, 0.6) = 0.299*0.2 + 0.587*0.4 + 0.114*0.6 = 0.0598 + 0.2348 + 0.0684 = 0.363
    assert color.luminance(pixel(0.2, 0.4, 0.6)).item() == pytest.approx(0.363)


def test_matrices_are_the_published_ones():
    torch.testing.assert_close(color.RGB_TO_YIQ, torch.tensor(PUBLISHED_RGB_TO_YIQ))
    # the inverse used by yiq_to_rgb, read off by converting the unit YIQ vectors
    columns = [color.yiq_to_rgb(pixel(*unit).float()).flatten() for unit in torch.eye(3).tolist()]
    inverse = torch.stack(columns, dim=1)
    # the published inverse is rounded independently: it agrees to its third decimal (within 0.01)
    torch.testing.assert_close(inverse, torch.tensor(PUBLISHED_YIQ_TO_RGB), atol=0.01, rtol=0)


def test_round_trip_is_exact_on_images():
    image = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    yiq = color.rgb_to_yiq(image)
    assert yiq.shape == image.shape
    torch.testing.assert_close(color.yiq_to_rgb(yiq), image, atol=1e-5, rtol=0)
    torch.testing.assert_close(color.rgb_to_yiq(color.yiq_to_rgb(yiq)), yiq, atol=1e-5, rtol=0)


def test_luminance_is_the_first_channel_with_its_shape():
    image = torch.rand(2, 3, 4, 6, generator=torch.Generator().manual_seed(1))
    y = color.luminance(image)
    assert y.shape == (2, 1, 4, 6)
    torch.testing.assert_close(y[:, 0], 0.299 * image[:, 0] + 0.587 * image[:, 1] + 0.114 * image[:, 2])


def test_match_luminance_by_hand():
    # source [0, 2]: mean 1, std sqrt(2); reference [10, 14]: mean 12, std 2 sqrt(2)
    # y' = (y - 1) * (2 sqrt(2) / sqrt(2)) + 12 = 2 (y - 1) + 12 -> [10, 14]
    source = torch.tensor([0.0, 2.0]).view(1, 1, 1, 2)
    reference = torch.tensor([10.0, 14.0]).view(1, 1, 2, 1)  # any shape: only its statistics count
    torch.testing.assert_close(color.match_luminance(source, reference), torch.tensor([10.0, 14.0]).view(1, 1, 1, 2))


def test_match_luminance_gives_the_reference_statistics_and_keeps_the_order():
    g = torch.Generator().manual_seed(2)
    source, reference = torch.rand(1, 1, 6, 6, generator=g) * 0.2, 0.5 + torch.rand(1, 1, 9, 9, generator=g)
    matched = color.match_luminance(source, reference)
    assert matched.mean().item() == pytest.approx(reference.mean().item(), abs=1e-6)
    assert matched.std().item() == pytest.approx(reference.std().item(), rel=1e-5)
    assert torch.equal(matched.flatten().argsort(), source.flatten().argsort())  # an increasing affine map


def test_match_luminance_of_a_flat_image_is_the_reference_mean():
    # a flat source has no contrast to scale: y - mean_s = 0, so y' = mean_r everywhere (a one-colour style image)
    reference = 0.5 + torch.rand(1, 1, 9, 9, generator=torch.Generator().manual_seed(4))
    for value in (0.0, 0.4, 0.7):
        flat = torch.full((1, 1, 3, 3), value)
        torch.testing.assert_close(color.match_luminance(flat, reference), torch.full_like(flat, reference.mean().item()))


def test_combine_luminance_takes_y_from_one_image_and_iq_from_the_other():
    g = torch.Generator().manual_seed(3)
    content, stylised = torch.rand(1, 3, 5, 5, generator=g), torch.rand(2, 3, 5, 5, generator=g)
    y = color.luminance(stylised)
    out = color.combine_luminance(y, content)
    assert out.shape == (2, 3, 5, 5)
    yiq = color.rgb_to_yiq(out)
    torch.testing.assert_close(yiq[:, :1], y, atol=1e-5, rtol=0)
    torch.testing.assert_close(yiq[:, 1:], color.rgb_to_yiq(content)[:, 1:].expand(2, -1, -1, -1), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="differ in size"):
        color.combine_luminance(y, torch.rand(1, 3, 4, 5))


def test_wrong_shapes_are_refused():
    for bad in (torch.rand(3, 4, 4), torch.rand(1, 4, 4, 4), torch.rand(1, 1, 4, 4)):
        with pytest.raises(ValueError, match=r"\[batch, 3, height, width\]"):
            color.rgb_to_yiq(bad)
