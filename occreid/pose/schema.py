"""The 17 COCO keypoints, the PGFL-KD paper's K = 8 part groups (section 4.2) and the left/right mirror
tables.

Everything that needs left/right (the flip transform, the multi-part contrastive loss) reads them from here.
"""

COCO_KEYPOINTS: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
NUM_KEYPOINTS = len(COCO_KEYPOINTS)

# Index of each keypoint's mirror image under a horizontal flip.
KEYPOINT_FLIP: tuple[int, ...] = tuple(
    COCO_KEYPOINTS.index(n.replace("left", "@").replace("right", "left").replace("@", "right"))
    for n in COCO_KEYPOINTS
)

PART_GROUPS: tuple[str, ...] = (
    "head",
    "left_lower_arm",
    "right_lower_arm",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
    "torso",
)
NUM_PARTS = len(PART_GROUPS)

# Keypoints merged into each part group (section 4.2).
PART_KEYPOINTS: dict[str, tuple[str, ...]] = {
    "head": ("nose", "left_eye", "right_eye", "left_ear", "right_ear"),
    "left_lower_arm": ("left_elbow", "left_wrist"),
    "right_lower_arm": ("right_elbow", "right_wrist"),
    "left_knee": ("left_knee",),
    "right_knee": ("right_knee",),
    "left_ankle": ("left_ankle",),
    "right_ankle": ("right_ankle",),
    "torso": ("left_shoulder", "right_shoulder", "left_hip", "right_hip"),
}
PART_KEYPOINT_INDICES: tuple[tuple[int, ...], ...] = tuple(
    tuple(COCO_KEYPOINTS.index(k) for k in PART_KEYPOINTS[g]) for g in PART_GROUPS
)

# Index of each part group's mirror group (head and torso are their own mirrors).
PART_FLIP: tuple[int, ...] = tuple(
    PART_GROUPS.index(n.replace("left", "@").replace("right", "left").replace("@", "right"))
    for n in PART_GROUPS
)
