"""`occreid pose extract` (run an estimator once per dataset, cache keypoints) and `occreid pose show`."""

from __future__ import annotations

from pathlib import Path

import typer

from occreid.errors import OccreidError

MODEL_HELP = (
    "rtmlib: a local RTMPose/ViTPose .onnx file (works offline), or a URL; default: rtmlib's RTMPose-m body "
    "model. URLs and the default are downloaded by rtmlib on first use and cached; this needs a network."
)
DEVICE_HELP = "rtmlib: cpu or cuda (ONNX Runtime's provider; cuda needs onnxruntime-gpu); mediapipe: cpu."

pose_app = typer.Typer(
    help="Keypoints: extract them once per dataset, and look at them.", no_args_is_help=True
)


def _image_source(dataset: str | None, root: Path | None, images: Path | None) -> tuple[Path, list[str]]:
    """(root, relpaths) from --dataset/--root or from --images."""
    from occreid.pose.extract import dataset_relpaths, folder_relpaths

    if images is not None:
        if dataset is not None:
            raise OccreidError("give either --images DIR or --dataset NAME --root DIR, not both")
        return images, folder_relpaths(images)
    if dataset is None or root is None:
        raise OccreidError("say which images: --dataset NAME --root DIR, or --images DIR for a plain folder")
    try:
        from occreid.data.datasets import load_dataset
    except ImportError:
        raise OccreidError("dataset loaders are not available in this install; use --images DIR") from None
    ds = load_dataset(dataset, root)
    return Path(ds.root), dataset_relpaths(ds)


def extract(
    dataset: str | None = typer.Option(None, help="Dataset name (see `occreid data list`)."),
    root: Path | None = typer.Option(None, help="Dataset root folder."),
    images: Path | None = typer.Option(None, help="A plain folder of images instead of a dataset."),
    estimator: str = typer.Option(..., help="mediapipe | rtmlib | coco-json | synthetic"),
    out: Path | None = typer.Option(None, help="Keypoint store; default <root>/keypoints.npz."),
    batch_size: int = typer.Option(
        16,
        help="Images read per step (one progress update). The estimators are single-person top-down models "
        "and run one image per forward pass whatever this is.",
    ),
    model: str | None = typer.Option(None, help=MODEL_HELP),
    device: str = typer.Option("cpu", help=DEVICE_HELP),
    input: Path | None = typer.Option(
        None,
        "--input",
        help="coco-json: the results file; synthetic: the source store (default <root>/keypoints.npz).",
    ),
    images_json: Path | None = typer.Option(
        None, help="coco-json: a COCO file whose 'images' map ids to names."
    ),
    save_every: int = typer.Option(500, help="Save the store atomically every N new images."),
    overwrite: bool = typer.Option(False, help="Replace a store from another estimator instead of resuming."),
) -> None:
    """Estimate keypoints for every image once and cache them (resumes; prints how many had no person)."""
    from occreid.pose.estimators import ESTIMATOR_NAMES, build_estimator
    from occreid.pose.extract import extract_keypoints
    from occreid.pose.store import DEFAULT_STORE_NAME, KeypointStore
    from occreid.utils.files import check_output_file

    if estimator not in ESTIMATOR_NAMES:
        raise OccreidError(f"--estimator {estimator}: unknown; choose one of {', '.join(ESTIMATOR_NAMES)}")
    root_dir, relpaths = _image_source(dataset, root, images)
    out = out or root_dir / DEFAULT_STORE_NAME
    check_output_file(out, "--out", overwrite=True)  # a folder, or a file where its folder should be

    if estimator == "coco-json":
        from occreid.pose.estimators.base import has_pose
        from occreid.pose.estimators.coco_json import import_coco_json

        if input is None:
            raise OccreidError(
                "--estimator coco-json needs --input RESULTS.json (COCO keypoint results format)"
            )
        if out.exists() and not overwrite:
            raise OccreidError(f"{out} exists; pass --overwrite to replace it with the imported keypoints")
        keypoints, report = import_coco_json(input, relpaths, images_json, root=root_dir)
        store = KeypointStore(estimator="coco-json", settings={"source": str(input)})
        store.update(keypoints)
        store.save(out)
        typer.echo(report.summary())
        no_person = sum(not has_pose(k) for k in keypoints.values())
        typer.echo(f"wrote {len(store)} images to {out}; no person in {no_person}")
        return
    if estimator == "synthetic":
        from occreid.pose.estimators.base import has_pose
        from occreid.pose.estimators.synthetic import import_synthetic

        source = input or root_dir / DEFAULT_STORE_NAME
        store = import_synthetic(source, relpaths)
        if Path(out).resolve() != Path(source).resolve():
            if out.exists() and not overwrite:
                raise OccreidError(
                    f"--out {out} exists; pass --overwrite to replace it, or choose another path"
                )
            store.save(out)
        no_person = sum(not has_pose(store[p]) for p in relpaths)
        typer.echo(
            f"synthetic keypoints for {len(relpaths)} images OK in {out}; no visible keypoint in {no_person}"
        )
        return

    with build_estimator(estimator, model=model, device=device) as est:
        summary = extract_keypoints(
            est, root_dir, relpaths, out, batch_size=batch_size, save_every=save_every, overwrite=overwrite
        )
    typer.echo(str(summary))


def show(
    dataset: str | None = typer.Option(None, help="Dataset name."),
    root: Path | None = typer.Option(None, help="Dataset root folder."),
    images: Path | None = typer.Option(None, help="A plain folder of images instead of a dataset."),
    keypoints: Path | None = typer.Option(None, help="Keypoint store; default <root>/keypoints.npz."),
    estimator: str | None = typer.Option(None, help="Estimate on the fly instead (mediapipe | rtmlib)."),
    model: str | None = typer.Option(None, help=MODEL_HELP),
    device: str = typer.Option("cpu", help=DEVICE_HELP),
    last_stride: int | None = typer.Option(
        None,
        help="The backbone's last stride, which sets the heatmap size: 1 -> input / 16 (24 x 8 for "
        "384 x 128), 2 -> input / 32. Default: model.last_stride of the config.",
    ),
    num: int = typer.Option(8, help="Number of images."),
    seed: int = typer.Option(0, help="Which images: a seeded sample."),
    config: Path | None = typer.Option(
        None, help="Config for pose.* and data.image_size (default: built-in)."
    ),
    out: Path = typer.Option(..., help="Output PNG."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing picture at --out."),
) -> None:
    """Draw images with their skeleton and the 8 rendered part heatmaps to a PNG grid."""
    import random

    from occreid.config import load_config
    from occreid.pose.extract import read_rgb
    from occreid.pose.store import DEFAULT_STORE_NAME, KeypointStore
    from occreid.pose.visualize import draw_pose_grid
    from occreid.utils.files import check_picture_file

    check_picture_file(out, "--out", overwrite)
    cfg = load_config(config)
    last_stride = cfg.model.last_stride if last_stride is None else last_stride
    if last_stride not in (1, 2):
        raise OccreidError(f"--last-stride must be 1 or 2, got {last_stride}")
    root_dir, relpaths = _image_source(dataset, root, images)
    if num < 1:
        raise OccreidError(f"--num must be >= 1, got {num}")
    chosen = sorted(random.Random(seed).sample(relpaths, min(num, len(relpaths))))
    arrays = [read_rgb(root_dir / p) for p in chosen]
    if estimator is not None:
        from occreid.pose.estimators import build_estimator

        with build_estimator(estimator, model=model, device=device) as est:
            kpts = est.predict(arrays)
    else:
        store = KeypointStore.load(keypoints or root_dir / DEFAULT_STORE_NAME)
        store.check_coverage(chosen, source=str(keypoints or root_dir / DEFAULT_STORE_NAME))
        kpts = [store[p] for p in chosen]
    image_size = tuple(cfg.data.image_size)
    path = draw_pose_grid(arrays, kpts, out, cfg.pose, image_size, last_stride=last_stride, titles=chosen)
    typer.echo(f"wrote {path} ({len(chosen)} images)")


def register(app: typer.Typer) -> None:
    pose_app.command("extract")(extract)
    pose_app.command("show")(show)
    app.add_typer(pose_app, name="pose")
