"""k-reciprocal re-ranking equals a straightforward transcription of the reference algorithm."""

import numpy as np
import pytest
import torch

from occreid.errors import OccreidError
from occreid.evaluation import compute_distance, re_ranking, re_ranking_features


def reference_re_ranking(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3):
    """The widely used dense implementation (Zhong et al. 2017, Houjing Huang's matrix-input version)."""
    original_dist = np.concatenate(
        [np.concatenate([q_q_dist, q_g_dist], axis=1), np.concatenate([q_g_dist.T, g_g_dist], axis=1)], axis=0
    )
    original_dist = np.power(original_dist, 2).astype(np.float32)
    original_dist = np.transpose(1.0 * original_dist / np.max(original_dist, axis=0))
    V = np.zeros_like(original_dist).astype(np.float32)
    initial_rank = np.argsort(original_dist).astype(np.int32)
    query_num, all_num = q_g_dist.shape[0], original_dist.shape[0]
    for i in range(all_num):
        forward = initial_rank[i, : k1 + 1]
        backward = initial_rank[forward, : k1 + 1]
        k_reciprocal = forward[np.where(backward == i)[0]]
        expansion = k_reciprocal
        for candidate in k_reciprocal:
            half = int(np.around(k1 / 2.0))
            c_forward = initial_rank[candidate, : half + 1]
            c_backward = initial_rank[c_forward, : half + 1]
            c_reciprocal = c_forward[np.where(c_backward == candidate)[0]]
            if len(np.intersect1d(c_reciprocal, k_reciprocal)) > 2.0 / 3 * len(c_reciprocal):
                expansion = np.append(expansion, c_reciprocal)
        expansion = np.unique(expansion)
        weight = np.exp(-original_dist[i, expansion])
        V[i, expansion] = 1.0 * weight / np.sum(weight)
    original_dist = original_dist[:query_num]
    if k2 != 1:
        V_qe = np.zeros_like(V, dtype=np.float32)
        for i in range(all_num):
            V_qe[i] = np.mean(V[initial_rank[i, :k2], :], axis=0)
        V = V_qe
    inv_index = [np.where(V[:, i] != 0)[0] for i in range(all_num)]
    jaccard = np.zeros_like(original_dist, dtype=np.float32)
    for i in range(query_num):
        temp_min = np.zeros((1, all_num), dtype=np.float32)
        for j in np.where(V[i] != 0)[0]:
            temp_min[0, inv_index[j]] += np.minimum(V[i, j], V[inv_index[j], j])
        jaccard[i] = 1 - temp_min / (2.0 - temp_min)
    final = jaccard * (1 - lambda_value) + original_dist * lambda_value
    return final[:, query_num:]


@pytest.fixture(scope="module")
def features():
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((12, 16)).astype(np.float32)
    qf = centres[rng.integers(0, 12, 40)] + 0.7 * rng.standard_normal((40, 16)).astype(np.float32)
    gf = centres[rng.integers(0, 12, 160)] + 0.7 * rng.standard_normal((160, 16)).astype(np.float32)
    return qf, gf


@pytest.mark.parametrize("k1,k2,lam", [(20, 6, 0.3), (10, 3, 0.3), (5, 1, 0.5)])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_matches_reference(features, k1, k2, lam, metric):
    qf, gf = features
    qg, qq, gg = (compute_distance(a, b, metric=metric) for a, b in ((qf, gf), (qf, qf), (gf, gf)))
    expected = reference_re_ranking(qg, qq, gg, k1, k2, lam)
    from_matrices = re_ranking(qg, qq, gg, k1=k1, k2=k2, lambda_value=lam, chunk_size=64)
    from_features = re_ranking_features(qf, gf, k1=k1, k2=k2, lambda_value=lam, metric=metric, chunk_size=50)
    assert from_matrices.shape == (40, 160) and from_matrices.dtype == np.float32
    assert np.abs(from_matrices - expected).max() <= 1e-5
    assert np.abs(from_features - expected).max() <= 1e-5
    # re-ranking really changes the distances (else the comparison above would be vacuous)
    assert np.abs(expected - qg).max() > 0.05


def test_asymmetric_matrices_and_torch_inputs():
    rng = np.random.default_rng(5)
    qg = rng.random((15, 50)).astype(np.float32)
    qq = rng.random((15, 15)).astype(np.float32)
    gg = rng.random((50, 50)).astype(np.float32)
    np.fill_diagonal(qq, 0)
    np.fill_diagonal(gg, 0)
    expected = reference_re_ranking(qg, qq, gg, 8, 3, 0.3)
    ours = re_ranking(
        torch.from_numpy(qg), torch.from_numpy(qq), torch.from_numpy(gg), k1=8, k2=3, chunk_size=16
    )
    assert np.abs(ours - expected).max() <= 1e-5


def test_600_queries_128d_random_features_same_values_and_ranking():
    """The benchmark's "fewer queries" shape (600 queries, 128-d random features), gallery cut to 2,400 to
    keep the dense reference quick: exercises the bounded k-smallest selection on realistic block sizes."""
    rng = np.random.default_rng(11)
    qf = torch.nn.functional.normalize(torch.from_numpy(rng.standard_normal((600, 128)).astype(np.float32)))
    gf = torch.nn.functional.normalize(torch.from_numpy(rng.standard_normal((2400, 128)).astype(np.float32)))
    qg, qq, gg = (compute_distance(a, b).numpy() for a, b in ((qf, gf), (qf, qf), (gf, gf)))
    expected = reference_re_ranking(qg, qq, gg)
    ours = re_ranking(qg, qq, gg)
    assert np.abs(ours - expected).max() <= 1e-5
    assert (np.argsort(ours, axis=1)[:, :50] == np.argsort(expected, axis=1)[:, :50]).all()
    assert np.abs(re_ranking_features(qf, gf) - expected).max() <= 1e-5


def test_tiny_sets_and_float64_inputs():
    """N < 4 (k1 + 1) takes the torch.topk fallback; float64 matrices are squared before the float32 cast."""
    rng = np.random.default_rng(7)
    qf, gf = rng.standard_normal((5, 8)).astype(np.float32), rng.standard_normal((12, 8)).astype(np.float32)
    qg, qq, gg = (np.asarray(compute_distance(a, b), np.float64) for a, b in ((qf, gf), (qf, qf), (gf, gf)))
    expected = reference_re_ranking(qg, qq, gg)
    assert np.abs(re_ranking(qg, qq, gg) - expected).max() <= 1e-5
    assert np.abs(re_ranking_features(qf, gf) - expected).max() <= 1e-5


def test_negative_entries_and_negative_zero_match_the_reference():
    """Selection runs on unsquared float32 distances when none is negative: a -0.0 diagonal must sort as 0,
    and a negative entry (squared, it may precede smaller positives) sends the block through the squares."""
    rng = np.random.default_rng(13)
    qg = rng.random((20, 90)).astype(np.float32)
    qq, gg = rng.random((20, 20)).astype(np.float32), rng.random((90, 90)).astype(np.float32)
    np.fill_diagonal(qq, -0.0)
    np.fill_diagonal(gg, -0.0)
    expected = reference_re_ranking(qg, qq, gg, 8, 3, 0.3)
    assert np.abs(re_ranking(qg, qq, gg, k1=8, k2=3, chunk_size=32) - expected).max() <= 1e-5
    gg[rng.random(gg.shape) < 0.05] *= -1.0  # 5% negative: in squares they reorder
    expected = reference_re_ranking(qg, qq, gg, 8, 3, 0.3)
    assert np.abs(re_ranking(qg, qq, gg, k1=8, k2=3, chunk_size=32) - expected).max() <= 1e-5


def test_mixed_dtypes_are_squared_in_the_joint_matrix_dtype():
    """The reference concatenates first: a float16 or int16 piece beside float32 ones is squared in float32
    (in float16 its squares overflow above 256)."""
    rng = np.random.default_rng(17)
    x = rng.standard_normal((60, 8))
    d = (np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1)) * 100).astype(np.float32)
    qq, qg, gg = d[:12, :12], d[:12, 12:], d[12:, 12:]
    for mixed in ((qq, qg.astype(np.float16), gg), (qq, np.round(qg).astype(np.int16), gg)):
        assert (
            np.abs(
                re_ranking(mixed[1], mixed[0], mixed[2], k1=8, k2=3)
                - reference_re_ranking(mixed[1], mixed[0], mixed[2], 8, 3)
            ).max()
            <= 1e-5
        )
    negative = qq.astype(np.float16)
    negative[0, 1] *= -1  # sends its block through the squares
    expected = reference_re_ranking(qg, negative, gg, 8, 3)
    assert np.abs(re_ranking(qg, negative, gg, k1=8, k2=3) - expected).max() <= 1e-5


def test_threads_give_the_same_bits_and_empty_sides_work(features):
    qf, gf = features
    qg, qq, gg = (np.asarray(compute_distance(a, b)) for a, b in ((qf, gf), (qf, qf), (gf, gf)))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = re_ranking(qg, qq, gg, chunk_size=16)
        torch.set_num_threads(3)
        three = re_ranking(qg, qq, gg, chunk_size=16)
    finally:
        torch.set_num_threads(threads)
    assert np.array_equal(one, three)
    assert np.abs(one - reference_re_ranking(qg, qq, gg)).max() <= 1e-5
    assert re_ranking(qg[:0], qq[:0, :0], gg).shape == (0, 160)
    assert re_ranking(qg[:, :0], qq, gg[:0, :0]).shape == (40, 0)
    assert re_ranking(qg[:0, :0], qq[:0, :0], gg[:0, :0]).shape == (0, 0)


def test_nan_is_one_clear_error(features):
    qf, gf = features
    qg, qq, gg = (np.array(compute_distance(a, b)) for a, b in ((qf, gf), (qf, qf), (gf, gf)))
    gg[3, 7] = np.nan
    with pytest.raises(OccreidError, match="NaN"):
        re_ranking(qg, qq, gg)
    gf = gf.copy()
    gf[5, 2] = np.nan
    with pytest.raises(OccreidError, match="NaN"):
        re_ranking_features(qf, gf)


def test_bad_parameters():
    with pytest.raises(OccreidError, match="k1"):
        re_ranking(np.zeros((2, 3)), np.zeros((2, 2)), np.zeros((3, 3)), k1=0)
    with pytest.raises(OccreidError, match="q_q"):
        re_ranking(np.zeros((2, 3)), np.zeros((3, 3)), np.zeros((3, 3)))
    with pytest.raises(OccreidError, match="metric"):
        re_ranking_features(np.zeros((2, 3)), np.zeros((4, 3)), metric="manhattan")


@pytest.mark.parametrize("metric,normalize,k1,k2", [("euclidean", True, 20, 6), ("cosine", False, 10, 3)])
def test_eval_path_reranks_from_features_with_the_matrix_path_numbers(
    features, monkeypatch, metric, normalize, k1, k2
):
    import occreid.evaluation as evaluation
    from occreid.config import Config
    from occreid.data.records import ImageRecord
    from occreid.evaluation import evaluate_rank
    from occreid.evaluation.evaluate import evaluate_features

    qf, gf = features
    rng = np.random.default_rng(7)
    q_pids, g_pids = rng.integers(0, 12, 40), rng.integers(0, 12, 160)
    q_cams, g_cams = rng.integers(0, 3, 40), rng.integers(0, 3, 160)
    query = [ImageRecord(f"q{i}.jpg", int(p), int(c)) for i, (p, c) in enumerate(zip(q_pids, q_cams))]
    gallery = [ImageRecord(f"g{i}.jpg", int(p), int(c)) for i, (p, c) in enumerate(zip(g_pids, g_cams))]
    cfg = Config()
    cfg.eval.metric, cfg.eval.normalize, cfg.eval.k1, cfg.eval.k2 = metric, normalize, k1, k2
    cfg.eval.rerank = True

    # The matrix path, as the evaluation used to run it: three dense matrices, then re_ranking.
    qn, gn = (
        torch.nn.functional.normalize(torch.from_numpy(x), dim=1) if normalize else torch.from_numpy(x)
        for x in (qf, gf)
    )
    qg, qq, gg = (compute_distance(a, b, metric=metric) for a, b in ((qn, gn), (qn, qn), (gn, gn)))
    expected = re_ranking(qg, qq, gg, k1=k1, k2=k2, lambda_value=cfg.eval.lambda_value)
    expected_result = evaluate_rank(expected, q_pids, g_pids, q_cams, g_cams, max_rank=cfg.eval.max_rank)

    # The evaluation must not build the (Q, Q) or (G, G) matrix, nor call the matrix-input re-ranking.
    shapes = []
    real_distance = evaluation.compute_distance

    def recording_distance(a, b, *args, **kwargs):
        shapes.append((len(a), len(b)))
        return real_distance(a, b, *args, **kwargs)

    def no_matrix_rerank(*args, **kwargs):
        raise AssertionError("evaluation re-ranked from dense q x q and g x g matrices")

    monkeypatch.setattr(evaluation, "compute_distance", recording_distance)
    monkeypatch.setattr(evaluation, "re_ranking", no_matrix_rerank)
    out = evaluate_features(torch.from_numpy(qf), torch.from_numpy(gf), query, gallery, cfg)
    assert (40, 40) not in shapes and (160, 160) not in shapes
    assert isinstance(out.distmat, np.ndarray) and out.distmat.shape == (40, 160)
    assert np.abs(out.distmat - expected).max() <= 1e-5
    assert np.abs(expected - qg.numpy()).max() > 0.05  # re-ranking changed the distances: not a vacuous check
    np.testing.assert_allclose(out.result.cmc, expected_result.cmc, atol=1e-12)
    assert out.result.mAP == pytest.approx(expected_result.mAP, abs=1e-6)
    assert out.result.mINP == pytest.approx(expected_result.mINP, abs=1e-6)
    assert out.settings["rerank"] == {"enabled": True, "k1": k1, "k2": k2, "lambda_value": 0.3}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_eval_path_on_cuda_equals_cpu(features):
    from occreid.config import Config
    from occreid.data.records import ImageRecord
    from occreid.evaluation.evaluate import evaluate_features

    qf, gf = (torch.from_numpy(x) for x in features)
    rng = np.random.default_rng(8)
    query = [ImageRecord(f"q{i}", int(p), 0) for i, p in enumerate(rng.integers(0, 12, 40))]
    gallery = [ImageRecord(f"g{i}", int(p), 1) for i, p in enumerate(rng.integers(0, 12, 160))]
    for rerank in (False, True):
        cfg = Config()
        cfg.eval.rerank = rerank
        cpu = evaluate_features(qf, gf, query, gallery, cfg, torch.device("cpu"))
        gpu = evaluate_features(qf, gf, query, gallery, cfg, torch.device("cuda"))
        assert isinstance(gpu.distmat, np.ndarray)
        assert np.abs(gpu.distmat - cpu.distmat).max() <= 1e-4
        assert gpu.result.mAP == pytest.approx(cpu.result.mAP, abs=1e-4)
