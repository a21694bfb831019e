"""The fair controls of OGFR (the ViT baseline on occluded views, on both views) and the agent analysis
(occreid.evaluation.agent_analysis) on constructed cases."""

import pytest
import torch

from occreid.config import load_config
from occreid.evaluation.agent_analysis import REGIONS, analyse_agent, region_fractions, token_regions
from occreid.methods import build_model
from occreid.modeling.base import BatchNeeds

TINY = ["model.pretrained=false", "data.image_size=[64,32]", "model.drop_path=0"]


@pytest.mark.parametrize("views", ["holistic", "occluded", "both"])
def test_the_baseline_trains_on_the_views_it_is_set_to(views, batch_for):
    cfg = load_config("configs/demo/vit_baseline.yaml", [*TINY, f"baseline.views={views}"])
    torch.manual_seed(0)
    method = build_model(cfg, num_classes=4)
    assert method.batch_needs().paired_views == (views != "holistic")
    batch = batch_for(BatchNeeds(paired_views=True), (64, 32))  # both views, whichever it trains on
    seen = []
    original = method.feature_map
    method.feature_map = lambda images, cams=None: seen.append(images) or original(images, cams)
    terms = method.training_step(batch)
    (images,) = seen
    expected = {
        "holistic": batch["images"],
        "occluded": batch["occluded"],
        "both": torch.cat([batch["images"], batch["occluded"]]),
    }[views]
    assert torch.equal(images, expected)
    assert torch.isfinite(terms["id_G"]) and terms["tri_G"].requires_grad


def test_token_regions_take_the_topmost_region():
    masks = {name: torch.zeros(1, 1, 64, 32) for name in REGIONS[:-1]}
    masks["person"][..., :, 8:24] = 1  # the middle columns of every row
    masks["occluder"][..., 32:, :] = 1  # the bottom half
    masks["erasing"][..., :16, :16] = 1  # the top-left patch
    regions = token_regions(masks, 16, 16)  # 4 x 2 patches of 16 x 16
    names = [REGIONS[i] for i in regions[0].tolist()]
    assert names == ["erasing", "person", "person", "person", "occluder", "occluder", "occluder", "occluder"]
    index = torch.tensor([[0, 4]])
    assert region_fractions(index, regions) == {
        "erasing": 0.5,
        "occluder": 0.5,
        "person": 0.0,
        "background": 0.0,
    }


def test_agent_analysis_finds_a_position_prior_and_its_fixed_mask():
    """An agent that scores by position only (a bias on patch 6 and 7) erases the same tokens in every image:
    one distinct set, its fixed mask those positions, Jaccard 1; random erasing's shares are the regions'
    own."""
    cfg = load_config(
        "configs/demo/ogfr.yaml", [*TINY, "model.vit_depth=3", "ogfr.agent_block=2", "ogfr.erase_ratio=0.25"]
    )
    torch.manual_seed(0)
    method = build_model(cfg, num_classes=4)
    original = method.agent.forward
    bias = torch.zeros(8)
    bias[[6, 7]] = 100.0
    method.agent.forward = lambda tokens: original(tokens) + bias
    images = torch.randn(6, 3, 64, 32)
    masks = {name: torch.zeros(6, 1, 64, 32) for name in REGIONS[:-1]}
    masks["occluder"][..., 48:, :] = 1  # the bottom row of patches: 6 and 7
    out = analyse_agent(method, images, masks)
    assert out["k"] == 2 and out["fixed_positions"] == [6, 7] and out["distinct_greedy_sets"] == 1
    assert out["greedy"]["occluder"] == 1.0 and out["mean_jaccard_to_fixed"] == 1.0
    assert out["random"]["occluder"] == pytest.approx(2 / 8)
    assert out["position_frequency"][6] == out["position_frequency"][7] == 1.0
