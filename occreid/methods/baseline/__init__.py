"""The strong baseline (BoT): a backbone, global average pooling (a ViT's class token) and a BNNeck, trained
with label-smoothed ID and batch-hard triplet losses. On a CNN it is PGFL-KD's Table 6 row 1; on a ViT it is
OGFR's baseline."""

from occreid.methods import DemoModel

DEMO = (DemoModel("baseline", "Baseline"), DemoModel("vit_baseline", "ViT baseline"))
