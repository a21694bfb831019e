from collections import Counter

import numpy as np
import pytest

from occreid.data.samplers import PKSampler
from occreid.errors import OccreidError


def _pids(seed: int = 0, num_ids: int = 30) -> list[int]:
    """Unsorted pids with 1..20 images each (some identities have fewer than k images)."""
    rng = np.random.default_rng(seed)
    pids = [pid for pid in range(num_ids) for _ in range(int(rng.integers(1, 21)))]
    return [pids[i] for i in rng.permutation(len(pids))]


def _check_pk(batch: list[int], pids: list[int], p: int, k: int) -> None:
    assert len(batch) == p * k
    counts = Counter(pids[i] for i in batch)
    assert len(counts) == p
    assert set(counts.values()) == {k}
    # Identities come in contiguous groups of k.
    assert all(len({pids[i] for i in batch[j * k : (j + 1) * k]}) == 1 for j in range(p))


def test_every_batch_is_p_identities_times_k_images():
    pids = _pids()
    sampler = PKSampler(pids, p=4, k=6, seed=3, num_batches=30 // 4)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 30 // 4
    for batch in batches:
        _check_pk(batch, pids, 4, 6)
        counts = Counter(pids[i] for i in batch)
        for pid in counts:
            n = pids.count(pid)
            images = [i for i in batch if pids[i] == pid]
            if n >= 6:
                assert len(set(images)) == 6  # no repeats when an identity has enough images
            else:
                assert set(images) == {i for i, q in enumerate(pids) if q == pid}  # all used, then repeats
    # One epoch visits each identity at most once: 7 batches x 4 = 28 of the 30 identities.
    visited = [pids[b[j * 6]] for b in batches for j in range(4)]
    assert len(visited) == len(set(visited)) == 28


def test_deterministic_under_seed_and_different_across_epochs():
    pids = _pids(1)
    a = PKSampler(pids, 4, 4, seed=5)
    b = PKSampler(pids, 4, 4, seed=5)
    assert list(a) == list(b)
    c = PKSampler(pids, 4, 4, seed=6)
    assert list(PKSampler(pids, 4, 4, seed=5)) != list(c)
    a.set_epoch(2)
    b.set_epoch(3)
    e2, e3 = list(a), list(b)
    assert e2 != e3
    a.set_epoch(3)
    assert list(a) == e3  # set_epoch pins the epoch
    # Iterating again without set_epoch moves on to the next epoch instead of repeating.
    fresh = PKSampler(pids, 4, 4, seed=5)
    first, second = list(fresh), list(fresh)
    assert first != second
    fresh.set_epoch(1)
    assert list(fresh) == second


def test_num_batches_and_stream_is_prefix_stable():
    pids = _pids(2)
    long = PKSampler(pids, 3, 4, seed=0, num_batches=40)
    short = PKSampler(pids, 3, 4, seed=0, num_batches=5)
    assert len(long) == 40 and len(short) == 5
    long_batches = list(long)
    assert len(long_batches) == 40
    assert list(short) == long_batches[:5]
    for batch in long_batches:  # many passes over the 30 identities: still P x K everywhere
        _check_pk(batch, pids, 3, 4)
    # Over 40 batches (4 passes), identities are visited evenly: 120 visits over 30 ids -> each 4 times.
    visits = Counter(pids[b[j * 4]] for b in long_batches for j in range(3))
    assert set(visits.values()) == {4}


def test_identity_cycle_does_not_repeat_images_within_a_visit():
    # 5 images per identity, k = 4: the second visit spans two image cycles.
    pids = [pid for pid in range(4) for _ in range(5)]
    sampler = PKSampler(pids, p=4, k=4, seed=0, num_batches=10)
    per_id: dict[int, list[int]] = {pid: [] for pid in range(4)}
    for batch in sampler:
        for j in range(4):
            group = batch[j * 4 : (j + 1) * 4]
            assert len(set(group)) == 4
            per_id[pids[group[0]]].extend(group)
    for pid, images in per_id.items():
        assert Counter(images) == Counter({i: 8 for i in range(pid * 5, pid * 5 + 5)})  # 40 draws / 5 images


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_are_disjoint_and_union_is_the_single_process_stream(world_size):
    pids = _pids(4, num_ids=40)
    per_rank = 4
    single = list(PKSampler(pids, 4, 4, seed=9, num_batches=per_rank * world_size))
    ranks = [
        PKSampler(pids, 4, 4, seed=9, rank=r, world_size=world_size, num_batches=per_rank)
        for r in range(world_size)
    ]
    for sampler in ranks:
        sampler.set_epoch(0)
    streams = [list(s) for s in ranks]
    assert all(len(s) == len(r) == per_rank for s, r in zip(streams, ranks))
    # Rank r holds batches r, r + W, ... of the single stream.
    for r, stream in enumerate(streams):
        assert stream == single[r::world_size]
    as_sets = [frozenset(tuple(b) for b in s) for s in streams]
    for i in range(world_size):
        for j in range(i + 1, world_size):
            assert not as_sets[i] & as_sets[j]
    assert sorted(tuple(b) for s in streams for b in s) == sorted(tuple(b) for b in single)
    # Together the ranks visit the 40 identities evenly (each once before any twice): 32 or 48 visits.
    visits = Counter(pids[b[j * 4]] for s in streams for b in s for j in range(4))
    expected = {1} if world_size == 2 else {1, 2}
    assert set(visits.values()) == expected and sum(visits.values()) == 16 * world_size


def test_bad_options_are_user_errors():
    pids = [0, 0, 1, 1, 2]
    with pytest.raises(OccreidError, match=r"data\.p=4 .* only 3 identities"):
        PKSampler(pids, p=4, k=2)
    with pytest.raises(OccreidError, match="data.p and data.k"):
        PKSampler(pids, p=2, k=0)
    with pytest.raises(ValueError, match="rank"):
        PKSampler(pids, p=2, k=2, rank=2, world_size=2)
    with pytest.raises(OccreidError, match="batches"):
        PKSampler(pids, p=2, k=2, num_batches=0)


def test_default_epoch_is_bots_about_one_pass_over_the_images():
    # BoT's identity sampler: an identity with n images gives max(1, n // k) groups of k; p groups a batch.
    pids = [0] * 13 + [1] * 3 + [2] * 8 + [3] * 4 + [4] * 1 + [5] * 9  # groups of 4: 3, 1, 2, 1, 1, 2 = 10
    assert len(PKSampler(pids, p=2, k=4)) == 10 // 2
    assert len(list(PKSampler(pids, p=2, k=4))) == 5
    assert len(PKSampler(pids, p=3, k=4)) == 10 // 3
    assert [len(PKSampler(pids, p=2, k=4, rank=r, world_size=2)) for r in (0, 1)] == [2, 2]
    assert len(PKSampler(pids, p=6, k=4, world_size=8)) == 1  # never zero
