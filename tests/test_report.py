"""Results JSON: one settings schema, every value present and equal to what produced the numbers."""

import json

import numpy as np
import pytest
import torch

from occreid.config import Config
from occreid.data.records import ImageRecord
from occreid.errors import OccreidError
from occreid.evaluation import evaluate_rank, results_to_json
from occreid.evaluation.evaluate import evaluate_features


def small_split(seed=0, num_q=12, num_g=40, dim=8):
    rng = np.random.default_rng(seed)
    q_pids, g_pids = rng.integers(0, 5, num_q), rng.integers(0, 5, num_g)
    query = [ImageRecord(f"q{i}.jpg", int(p), 0) for i, p in enumerate(q_pids)]
    gallery = [ImageRecord(f"g{i}.jpg", int(p), 1) for i, p in enumerate(g_pids)]
    qf = torch.from_numpy(rng.standard_normal((num_q, dim)).astype(np.float32))
    gf = torch.from_numpy(rng.standard_normal((num_g, dim)).astype(np.float32))
    return qf, gf, query, gallery


@pytest.mark.parametrize("rerank", [False, True])
def test_eval_results_json_records_each_setting(rerank):
    cfg = Config()
    cfg.model.test_feature = "f_E"
    cfg.eval.metric, cfg.eval.normalize, cfg.eval.flip = "cosine", False, True
    cfg.eval.rerank, cfg.eval.k1, cfg.eval.k2, cfg.eval.lambda_value = rerank, 7, 2, 0.25
    cfg.eval.max_rank = 20
    qf, gf, query, gallery = small_split()
    out = evaluate_features(qf, gf, query, gallery, cfg)
    payload = json.loads(json.dumps(results_to_json(out.result, out.settings)))

    settings = payload["settings"]
    assert settings["feature"] == "f_E"
    assert settings["normalize"] is False
    assert settings["metric"] == "cosine"
    assert settings["flip"] is True
    assert settings["rerank"] == {"enabled": rerank, "k1": 7, "k2": 2, "lambda_value": 0.25}
    assert settings["max_rank"] == 20
    assert settings["num_query"] == 12 and settings["num_gallery"] == 40
    assert "distance" not in settings and "k1" not in settings  # one schema: no second, flat copy
    nulls = [key for key, value in settings.items() if value is None]
    nulls += [f"rerank.{key}" for key, value in settings["rerank"].items() if value is None]
    assert not nulls

    assert payload["metrics"]["mAP"] == pytest.approx(out.result.mAP)
    assert payload["metrics"]["rank1"] == pytest.approx(out.result.cmc[0])
    assert len(payload["cmc"]) == 20
    assert (payload["num_query"], payload["num_gallery"]) == (12, 40)


def test_flat_rerank_settings_are_folded_and_missing_ones_named():
    r = evaluate_rank(np.array([[0.1, 0.2]]), [1], [1, 2], [0], [1, 1], max_rank=2)
    flat = {
        "feature": "f_G",
        "normalize": True,
        "metric": "euclidean",
        "flip": False,
        "rerank": True,
        "k1": 20,
        "k2": 6,
        "lambda_value": 0.3,
        "dataset": "market1501",
    }
    settings = results_to_json(r, flat)["settings"]
    assert settings["rerank"] == {"enabled": True, "k1": 20, "k2": 6, "lambda_value": 0.3}
    assert "k1" not in settings and settings["max_rank"] == 2 and settings["dataset"] == "market1501"
    with pytest.raises(OccreidError, match=r"normalize, flip, rerank\.k2, rerank\.lambda_value"):
        results_to_json(r, {"feature": "f_G", "metric": "euclidean", "rerank": True, "k1": 20})
    with pytest.raises(OccreidError, match="lack rerank$|lack rerank;"):
        results_to_json(r, {"feature": "f_G", "normalize": True, "metric": "euclidean", "flip": False})
