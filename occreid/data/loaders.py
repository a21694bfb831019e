"""The torch Dataset over image records and the train/test DataLoader builders the trainer calls.

    train_loader = build_train_loader(cfg, dataset.train, keypoints)   # P x K batches, augmented
    for batch in train_loader:
        batch["images"]     # (B, 3, H, W) float32, normalised
        batch["pids"]       # (B,) int64
        batch["camids"]     # (B,) int64
        batch["paths"]      # list of B str
        batch["index"]      # (B,) int64, positions in `records`
        batch["keypoints"]  # (B, 17, 3) float32 (x, y, conf) in the pixels of `images`; only with keypoints

With `paired_views=True` (docs/ogfr.md section 1; occreid.data.occlusion) each batch also has the occluded
view of the same augmented image (same resize, flip, pad + crop and random erasing; the occluder is pasted
last). With cfg.occlusion.erasing_views="student_only" only the occluded view is randomly erased and
"images" is the unerased x:
        batch["occluded"]   # (B, 3, H, W) float32, normalised like "images" (x~; "images" stays x)
        batch["occ_type"]   # (B,) int64, index into cfg.occlusion.types
        batch["occ_mask"]   # (B, 1, H, W) float32 in {0, 1}, 1 where the occluder covers the pixel
`occreid.data.occlusion.patch_mask(batch["occ_mask"], patch_size, stride, cfg.occlusion.mask_threshold)` gives
the (B, N) per-patch mask. Keypoints belong to both views (the geometry is shared) and are not changed by the
occluder.

`keypoints[i]` belongs to `records[i]` and is in that image's original pixel coordinates (as in the keypoint
store, occreid.pose.store).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from occreid.data.images import read_image
from occreid.data.occlusion import OcclusionAugment, OcclusionDraw
from occreid.data.records import ImageRecord
from occreid.data.samplers import PKSampler
from occreid.data.transforms import RandomErasing, build_transforms
from occreid.errors import OccreidError
from occreid.pose.schema import NUM_KEYPOINTS
from occreid.utils.device import cpus_per_process

if TYPE_CHECKING:
    from occreid.config import Config

ReidTransformFn = Callable[[Any, np.ndarray | None], tuple[torch.Tensor, np.ndarray | None]]


class ImageDataset(Dataset):
    """Records (+ optional per-record keypoints) -> dicts of a transformed image and its labels.

    Item i: {"images": (3, H, W) float tensor, "pids": int, "camids": int, "paths": str, "index": i,
    "keypoints": (17, 3) float32 tensor (only when keypoints are given)}.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        transform: ReidTransformFn,
        keypoints: Sequence[np.ndarray] | None = None,
    ) -> None:
        self.records = list(records)
        self.transform = transform
        self.keypoints = None
        if keypoints is not None:
            if len(keypoints) != len(self.records):
                raise ValueError(f"got {len(keypoints)} keypoint arrays for {len(self.records)} records")
            self.keypoints = [np.asarray(k, dtype=np.float32) for k in keypoints]
            for i, kpts in enumerate(self.keypoints):
                if kpts.shape != (NUM_KEYPOINTS, 3):
                    raise ValueError(
                        f"keypoints of {self.records[i].path} have shape {kpts.shape}, expected "
                        f"({NUM_KEYPOINTS}, 3)"
                    )

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        img = read_image(record.path)
        image, kpts = self.transform(img, None if self.keypoints is None else self.keypoints[index])
        item = {
            "images": image,
            "pids": record.pid,
            "camids": record.camid,
            "paths": record.path,
            "index": index,
        }
        if kpts is not None:
            item["keypoints"] = torch.from_numpy(np.ascontiguousarray(kpts, dtype=np.float32))
        return item


class PairedViewDataset(ImageDataset):
    """ImageDataset items plus an occluded view of the same augmented image ("occluded", "occ_type",
    "occ_mask"; see the module docstring). The occluder's source images are other identities' records."""

    def __init__(
        self,
        records: Sequence[ImageRecord],
        transform: ReidTransformFn,
        augment: OcclusionAugment,
        keypoints: Sequence[np.ndarray] | None = None,
        student_erasing: RandomErasing | None = None,
    ) -> None:
        super().__init__(records, transform, keypoints)
        self.augment = augment
        self.student_erasing = student_erasing  # erases the occluded view only (`transform` has no erasing)

    def other_image(self, pid: int) -> np.ndarray:
        """(H0, W0, 3) uint8: a random training image of another identity (of any, if every record has `pid`),
        as stored (the occluder sources crop it and resize only the crop). Drawn with torch's global
        generator, like the other augmentations."""
        for _ in range(16):
            record = self.records[int(torch.randint(0, len(self.records), ()))]
            if record.pid != pid:
                break
        return np.asarray(read_image(record.path), dtype=np.uint8)

    def views(self, index: int) -> tuple[dict[str, Any], OcclusionDraw]:
        """The plain item (holistic view x) and the occlusion drawn for it (type, source, box, occluder)."""
        item = super().__getitem__(index)
        pid = self.records[index].pid
        return item, self.augment.sample(lambda: self.other_image(pid))

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = super().__getitem__(index)
        student = item["images"]
        if self.student_erasing is not None:
            student, _ = self.student_erasing(student, None)
        draw = self.augment.sample(lambda: self.other_image(self.records[index].pid))
        occluded, occ_mask = self.augment.paste(student, draw)
        item.update(occluded=occluded, occ_type=draw.type_index, occ_mask=occ_mask)
        return item


class ReidDataLoader(DataLoader):
    """A DataLoader that re-raises an OccreidError from a worker process with its original one-line message.

    (torch wraps worker exceptions in a message carrying the worker's traceback; the CLI prints user errors as
    one line.)
    """

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from super().__iter__()
        except OccreidError as exc:
            message = str(exc)
            marker = "OccreidError: "
            if "in DataLoader worker process" in message and marker in message:
                raise OccreidError(message.rsplit(marker, 1)[1].strip()) from None
            raise


def loader_workers(setting: int | str) -> int:
    """data.num_workers as a number: "auto" is this process's CPU cores less one (the trainer's), at most 8
    (an OGFR item decodes up to two JPEGs and pastes an occluder; 8 workers keep a GPU step fed)."""
    if setting != "auto":
        return int(setting)
    return min(8, cpus_per_process() - 1)


def _check_cameras(cfg: Config, records: Sequence[ImageRecord]) -> None:
    """A ViT's camera embedding has model.num_cameras rows: every training camid must index one (checked
    once here, not on the GPU every step, which would cost a host sync)."""
    top, low = max(r.camid for r in records), min(r.camid for r in records)
    if cfg.model.num_cameras and top >= cfg.model.num_cameras:
        raise OccreidError(
            f"camera id {top} is out of range for model.num_cameras={cfg.model.num_cameras}; set it to the "
            f"training set's camera count ({top + 1} or more)"
        )
    if cfg.model.num_cameras and low < 0:  # -1 would index the last camera's vector without a word
        raise OccreidError(
            f"camera id {low} is out of range for model.num_cameras={cfg.model.num_cameras}: camera ids are "
            "0-based; fix the data's camid column (or set model.num_cameras=0)"
        )


def build_train_loader(
    cfg: Config,
    records: Sequence[ImageRecord],
    keypoints: Sequence[np.ndarray] | None = None,
    *,
    paired_views: bool = False,
    rank: int = 0,
    world_size: int = 1,
    seed: int | None = None,
) -> DataLoader:
    """Augmented P x K training loader (`PKSampler`, p = cfg.data.p, k = cfg.data.k, batch = p * k).

    `paired_views`: each batch also holds the occluded view, its occlusion type and pixel mask
    (`cfg.occlusion`, held-out types and sources never drawn; see the module docstring).

    The epoch length is cfg.train.steps_per_epoch batches per rank (None: BoT's epoch, about one pass over the
    images). Call `loader.batch_sampler.set_epoch(epoch)` before each epoch. Augmentations are reproducible:
    worker w of rank r is seeded by torch from a loader generator seeded with (seed, rank) (seed:
    cfg.train.seed by default); with num_workers = 0 the augmentations use torch's global generator, so seed
    it (torch.manual_seed) yourself.
    """
    if len(records) == 0:
        raise OccreidError("the training split has no images; check data.root and the dataset layout")
    _check_cameras(cfg, records)
    seed = cfg.train.seed if seed is None else seed
    transform = build_transforms(cfg.data, train=True)
    if paired_views:
        augment = OcclusionAugment(cfg.occlusion, cfg.data.image_size, cfg.data.mean, cfg.data.std)
        student_erasing = None
        if cfg.occlusion.erasing_views == "student_only" and cfg.data.erasing_prob > 0:
            transform = build_transforms(cfg.data, train=True, erasing=False)
            student_erasing = RandomErasing(cfg.data.erasing_prob)
        dataset: ImageDataset = PairedViewDataset(records, transform, augment, keypoints, student_erasing)
    else:
        dataset = ImageDataset(records, transform, keypoints)
    sampler = PKSampler(
        [r.pid for r in records],
        cfg.data.p,
        cfg.data.k,
        seed=seed,
        rank=rank,
        world_size=world_size,
        num_batches=cfg.train.steps_per_epoch,
    )
    generator = torch.Generator()
    generator.manual_seed(int(np.random.SeedSequence([seed, rank]).generate_state(1)[0]))
    return ReidDataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=loader_workers(cfg.data.num_workers),
        pin_memory=torch.cuda.is_available(),
        # Workers restart each epoch so the trainer can reseed `loader.generator` per epoch: a resumed run
        # then draws the same augmentations as an uninterrupted one.
        persistent_workers=False,
        generator=generator,
    )


def build_test_loader(
    cfg: Config,
    records: Sequence[ImageRecord],
    keypoints: Sequence[np.ndarray] | None = None,
    *,
    batch_size: int | None = None,
) -> DataLoader:
    """Sequential loader without augmentation (resize + normalise), batch_size = cfg.eval.batch_size by
    default.

    Batches come in the order of `records`; the last one may be smaller. Empty `records` give an empty loader
    (e.g. a rank's share of a tiny query set).
    """
    dataset = ImageDataset(records, build_transforms(cfg.data, train=False), keypoints)
    return ReidDataLoader(
        dataset,
        batch_size=batch_size or cfg.eval.batch_size,
        shuffle=False,
        drop_last=False,
        num_workers=loader_workers(cfg.data.num_workers),
        pin_memory=torch.cuda.is_available(),
    )
