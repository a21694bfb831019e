from occreid.pose.schema import (
    COCO_KEYPOINTS,
    KEYPOINT_FLIP,
    NUM_KEYPOINTS,
    NUM_PARTS,
    PART_FLIP,
    PART_GROUPS,
    PART_KEYPOINT_INDICES,
    PART_KEYPOINTS,
)


def test_sizes_and_group_names_follow_the_paper():
    assert NUM_KEYPOINTS == 17 and len(COCO_KEYPOINTS) == 17 and len(set(COCO_KEYPOINTS)) == 17
    assert NUM_PARTS == 8
    assert PART_GROUPS == (
        "head",
        "left_lower_arm",
        "right_lower_arm",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
        "torso",
    )
    assert set(PART_KEYPOINTS["torso"]) == {"left_shoulder", "right_shoulder", "left_hip", "right_hip"}
    assert set(PART_KEYPOINTS["left_lower_arm"]) == {"left_elbow", "left_wrist"}


def test_every_keypoint_in_exactly_one_group():
    flat = [i for group in PART_KEYPOINT_INDICES for i in group]
    assert sorted(flat) == list(range(NUM_KEYPOINTS))
    for g, idx in zip(PART_GROUPS, PART_KEYPOINT_INDICES):
        assert tuple(COCO_KEYPOINTS[i] for i in idx) == PART_KEYPOINTS[g]


def test_mirror_tables_are_involutions_that_swap_names():
    assert [KEYPOINT_FLIP[KEYPOINT_FLIP[i]] for i in range(17)] == list(range(17))
    assert [PART_FLIP[PART_FLIP[k]] for k in range(8)] == list(range(8))
    for i, name in enumerate(COCO_KEYPOINTS):
        mirrored = COCO_KEYPOINTS[KEYPOINT_FLIP[i]]
        if name.startswith("left_"):
            assert mirrored == "right_" + name[5:]
        elif name.startswith("right_"):
            assert mirrored == "left_" + name[6:]
        else:
            assert mirrored == name == "nose"
    assert PART_GROUPS[PART_FLIP[PART_GROUPS.index("left_knee")]] == "right_knee"
    assert PART_FLIP[PART_GROUPS.index("head")] == PART_GROUPS.index("head")
    assert PART_FLIP[PART_GROUPS.index("torso")] == PART_GROUPS.index("torso")


def test_flipping_keypoints_maps_groups_by_part_flip():
    for k, idx in enumerate(PART_KEYPOINT_INDICES):
        assert sorted(KEYPOINT_FLIP[i] for i in idx) == sorted(PART_KEYPOINT_INDICES[PART_FLIP[k]])
