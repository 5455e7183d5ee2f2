"""Motion data: the BVH parser against a hand-written file, forward kinematics against hand
computations, the DeepMimic loader, features, augmentations and the loaders on the installed clips."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tokenworks.checks import FileFormatError
from tokenworks.data import motion as M

TWO_JOINTS = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT Knee
  {
    OFFSET 0 -2 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    JOINT Foot
    {
      OFFSET 0 -3 0
      CHANNELS 3 Zrotation Xrotation Yrotation
      End Site
      {
        OFFSET 0 0 1
      }
    }
  }
}
MOTION
Frames: 3
Frame Time: 0.05
1 2 3 90 0 0 0 0 0 0 0 0
0 0 0 0 0 0 0 90 0 0 0 0
0 0 0 90 90 0 0 0 0 12.5 -7.25 33
"""


@pytest.fixture
def bvh_file(tmp_path):
    p = tmp_path / "two.bvh"
    p.write_text(TWO_JOINTS)
    return p


def test_bvh_parser_reads_the_exact_hierarchy_and_angles(bvh_file):
    b = M.read_bvh(bvh_file)
    assert b.names == ["Hips", "Knee", "Foot"] and b.parents == [-1, 0, 1]
    assert b.offsets.tolist() == [[0, 0, 0], [0, -2, 0], [0, -3, 0]]
    assert b.channels[0] == ["Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation"]
    assert b.frame_time == 0.05 and b.motion.shape == (3, 12)
    assert b.motion[2, 9:].tolist() == [12.5, -7.25, 33.0]  # exact angles of the last joint
    assert b.motion[0, :4].tolist() == [1, 2, 3, 90]
    assert [e[0] for e in b.end_sites] == [2]


def test_bvh_forward_kinematics_against_hand_computation(bvh_file):
    pos = M.bvh_positions(M.read_bvh(bvh_file))
    # frame 0: root at (1, 2, 3) turned 90 deg about z: (0, -2, 0) -> (2, 0, 0), (0, -5, 0) -> (5, 0, 0)
    np.testing.assert_allclose(pos[0], [[1, 2, 3], [3, 2, 3], [6, 2, 3]], atol=1e-12)
    # frame 1: the knee turns 90 deg about x: the foot's (0, -3, 0) -> (0, 0, -3)
    np.testing.assert_allclose(pos[1], [[0, 0, 0], [0, -2, 0], [0, -2, -3]], atol=1e-12)
    # frame 2: root Z then X (R = Rz Rx): (0, -2, 0) -Rx-> (0, 0, -2) -Rz-> (0, 0, -2); Rx Rz would give (2, 0, 0)
    np.testing.assert_allclose(pos[2, :2], [[0, 0, 0], [0, 0, -2]], atol=1e-12)


@pytest.mark.parametrize("text, why", [
    ("HIERARCHY\nROOT A\n{\nOFFSET 0 0 0\nCHANNELS 3 Xrotation Yrotation Zrotation\n}\n", "no MOTION"),
    (TWO_JOINTS.replace("Frames: 3", "Frames: 4"), "declares 4 frames"),
    (TWO_JOINTS.replace("Zrotation Xrotation Yrotation\n    JOINT Foot", "Zrot Xrotation Yrotation\n    JOINT Foot"), "bad channels"),
    (TWO_JOINTS.replace("0 0 0 90 90", "0 0 x 90 90"), "non-numeric"),
])  # fmt: skip
def test_bvh_parser_rejects_malformed_files(tmp_path, text, why):
    p = tmp_path / "bad.bvh"
    p.write_text(text)
    with pytest.raises(FileFormatError, match=why):
        M.read_bvh(p)


def _identity_frame(root=(0.0, 0.9, 0.0)) -> np.ndarray:
    f = [1 / 30, *root, 1, 0, 0, 0]
    for _, dof in M._DM_LAYOUT:
        f += [1, 0, 0, 0] if dof == 4 else [0.0]
    return np.array([f])


def test_deepmimic_forward_kinematics_against_hand_computation():
    f = _identity_frame()
    pos = M.deepmimic_positions(f)[0]
    j = {n: pos[i] for i, n in enumerate(M.JOINTS)}
    np.testing.assert_allclose(j["right_knee"], [0, 0.9 - 1.686184 / 4, 0.339548 / 4], atol=1e-12)
    np.testing.assert_allclose(j["left_wrist"], [-0.0962 / 4, 0.9 + (0.944604 + 0.974 - 1.099152 - 1.035788) / 4, -0.73244 / 4], atol=1e-12)
    # bend the right knee 90 deg about z: the ankle offset (0, -l, 0) turns to (l, 0, 0)
    k = 8 + 4 + 4 + 4  # chest, neck, right_hip quaternions
    f[0, k] = math.pi / 2
    pos2 = M.deepmimic_positions(f)[0]
    np.testing.assert_allclose(pos2[M.JOINTS.index("right_ankle")], j["right_knee"] + [1.639480 / 4, 0, 0], atol=1e-12)


def test_features_invert_and_ignore_the_start_heading():
    rng = np.random.default_rng(0)
    pos = np.cumsum(rng.normal(size=(20, 15, 3)) * 0.01, 0) + M.load_clips()[0].positions[:1]
    feat = M.positions_to_features(pos)
    turned = M.augment(pos, yaw=1.3) + np.array([5.0, 0.0, -2.0])
    np.testing.assert_allclose(M.positions_to_features(turned), feat, atol=1e-5)
    back = M.features_to_positions(feat)
    # the round trip gives the motion back up to a yaw and ground shift: compare pairwise distances
    d = lambda p: np.linalg.norm(p[:, :, None] - p[:, None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(d(back), d(pos), atol=1e-5)


def test_mirror_and_speed_augmentations():
    pos = M.load_clips()[-1].positions[:40]  # walk
    mir = M.augment(pos, mirror=True)
    np.testing.assert_allclose(M.augment(mir, mirror=True), pos, atol=1e-9)
    r, l = M.JOINTS.index("right_wrist"), M.JOINTS.index("left_wrist")
    np.testing.assert_allclose(np.linalg.norm(mir[:, l] - mir[:, 0], axis=-1), np.linalg.norm(pos[:, r] - pos[:, 0], axis=-1), atol=1e-9)
    assert abs(M.augment(pos, speed=1.1).shape[0] - 40 / 1.1) <= 1
    with pytest.raises(ValueError, match="speed"):
        M.augment(pos, speed=1.5)


def test_real_clips_load_with_labels_and_counts():
    clips = M.load_clips()
    assert len(clips) == 18 and {c.source for c in clips} == {"cmu-bvh", "deepmimic"}
    assert all(c.label in M.LABELS and c.positions.shape[1:] == (15, 3) and np.isfinite(c.positions).all() for c in clips)
    heights = [np.median(c.positions[:, M.JOINTS.index("neck"), 1]) for c in clips if c.label in ("walk", "run", "punch")]
    assert all(1.0 < h < 1.8 for h in heights), heights  # standing people, scaled to DeepMimic's leg
    train, test = M.load_motion("train"), M.load_motion("test")
    assert set(np.unique(train.labels)) == set(range(len(M.LABELS)))
    assert len(train) > 4 * len(test) > 0 and train.features.shape[1:] == (M.MAX_FRAMES, 45)


def test_bad_input_errors():
    clip = M.load_clips()[-1]
    with pytest.raises(ValueError, match="window=1000 frames is longer than clip 'walk'"):
        M.clip_windows(clip, 1000, 4, "test")
    with pytest.raises(ValueError, match="label must be one of"):
        M.label_index("fly")
    with pytest.raises(ValueError, match="fixed_length"):
        M.load_motion("train", fixed_length=500)
