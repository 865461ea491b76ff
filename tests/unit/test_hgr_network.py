"""The HGR network: identity at init, any shape, config validation, parameter budget."""

import pytest
import torch

from hgr_core import HGR, HGRConfig, parameter_count

# The default config (SD1.x) must stay small: ~1% of a base UNet step and <= 20 MB on disk.
DEFAULT_PARAMETER_BUDGET = 5_000_000


def test_default_config_stays_under_its_parameter_budget():
    count = parameter_count(HGR(HGRConfig()))
    assert 1_000_000 < count < DEFAULT_PARAMETER_BUDGET


@pytest.mark.parametrize("shape", [(1, 4, 8, 8), (3, 4, 40, 24), (2, 4, 13, 7), (1, 16, 6, 10)])
def test_fresh_network_is_exactly_the_identity_for_any_shape(shape):
    hgr = HGR(HGRConfig(latent_channels=shape[1], base_channels=16))
    g, x = torch.randn(shape), torch.randn(shape)
    out = hgr(g, torch.rand(shape[0]) * 10, x, x)
    assert out.delta.shape == (shape[0], 2, shape[1], shape[2], shape[3])
    assert out.gate.shape == (shape[0], 2, shape[2], shape[3])
    assert torch.equal(out.delta, torch.zeros_like(out.delta))


def test_wrong_channel_count_is_refused():
    hgr = HGR(HGRConfig(base_channels=16))
    g = torch.randn(1, 16, 8, 8)
    with pytest.raises(ValueError, match=r"\(B, 4, H, W\)"):
        hgr(g, torch.ones(1), g, g)


def test_delta_scales_with_guidance_magnitude():
    hgr = HGR(HGRConfig(base_channels=16))
    torch.nn.init.normal_(hgr.head.weight, std=0.1)
    g, x = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    small = hgr(g, torch.ones(1), x, x).delta
    large = hgr(10 * g, torch.ones(1), x, x).delta
    assert torch.allclose(large, 10 * small, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"latent_channels": 0}, "latent_channels"),
        ({"categories": ()}, "categories"),
        ({"categories": ("a", "a")}, "categories"),
        ({"base_channels": 20}, "multiple of 8"),
        ({"context": ("prompt_text",)}, "unknown context"),
    ],
)
def test_invalid_config_is_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        HGRConfig(**fields)


def test_config_json_round_trip():
    config = HGRConfig(latent_channels=16, categories=("nudity",), channel_mult=(1, 2))
    assert HGRConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match="unknown config fields"):
        HGRConfig.from_json('{"bogus": 1}')
