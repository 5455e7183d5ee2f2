"""Motion capture that installs offline: CMU BVH clips (Debian ``assimp-testmodels``) and the
DeepMimic humanoid clips (PyPI ``pybullet``), on one fixed 15-joint skeleton.

Sources
    - ``$TOKENWORKS_DATA/assimp-bvh`` (else ``/usr/share/assimp/models/BVH``): CMU ``01_01``
      (120 fps, 2,752 frames), ``01_03`` (120 fps, 4,511 frames) and ``Boxing_Toes`` (100 fps,
      3,069 frames). Parsed by :func:`read_bvh`, a small parser written here (no BVH library
      installs from PyPI/Debian without extra native code; the format is 30 lines of grammar).
    - ``pybullet_data/data/motions/humanoid3d_*.txt``: 15 DeepMimic clips (JSON; frame =
      duration, root position, root quaternion, 12 joint rotations as quaternions (w, x, y, z) or
      1-DOF knee/elbow angles about z). ``laikago_walk`` (a quadruped) is not a humanoid and is
      left out. Forward kinematics uses the offsets of pybullet's ``humanoid/humanoid.urdf``
      (divided by its scale 4, as DeepMimic does).

Fixed skeleton (``JOINTS``): root, chest, neck and per side hip, knee, ankle, shoulder, elbow,
wrist. A BVH skeleton is mapped onto it by joint names (``BVH_MAP``); every clip is resampled to
``FPS`` = 20 frames per second (linear interpolation of joint positions), y is up, and lengths are
scaled so that the leg (hip -> knee -> ankle) is as long as DeepMimic's (0.83 m).

Features (:func:`positions_to_features`, 45 per frame): the root height, the root's planar
velocity (x, z per frame) and the 14 other joints relative to the root, all in the heading frame
of the window's first frame (the body faces +z, left hip at +x). The features are invariant to a
yaw rotation of the whole window, so the yaw augmentation of :func:`augment` is checked as such an
invariance; mirroring (swap left and right, negate x) and speed changes within +-10% (resampling
in time) change the features and keep the motion physically plausible.

Samples: every clip has a label (walk, run, jump, kick, punch, dance, getup, crawl, climb, flip,
spin) with a short text description, and a *natural length*: the DeepMimic clip's duration (one
cycle; for a clip that does not loop, 80% of it, so that the train part holds one), capped at ``MAX_FRAMES`` = 48 (2.4 s), rounded down to a multiple of 4
(the tokenizer's downsampling); CMU clips use ``MAX_FRAMES``. A sample is a window of the clip
with that length, so the length of a generated motion is predictable from its label (what BAMM's
and the AR model's end-of-motion prediction are scored on). Looping DeepMimic clips (``"Loop":
"wrap"``) are one cycle; they are tiled (root displacement carried on) to at least 6 s before the
split, so their test windows are later repetitions of the cycle (a caveat: for those clips the
test split measures fit to a seen motion, while the CMU takes and the non-looping DeepMimic clips
give truly unseen frames).

Split by time within each clip: the last 20% of every clip's frames is ``test``, the first 80%
``train``; a clip whose part is shorter than its sample length gives no windows to that split
(listed in ``MotionSet.skipped``).

Counts (20 fps, stride 4 frames), from ``load_clips`` / ``load_motion``:
    18 clips (3 CMU + 15 DeepMimic), 4,847 frames after resampling and tiling the loops
    (1,825 from CMU = 91 s; 3,022 from DeepMimic, one 0.8-4.4 s cycle or take each, loops tiled
    to >= 12 s); train: 808 windows from 18 clips (2,424 with ``augmentations=2``);
    test: 104 windows from 14 clips (getup_facedown, getup_faceup, kick and punch are too short
    for a test window at their natural length, so the label ``getup`` has no test windows).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from tokenworks.checks import FileFormatError, check_choice, check_float, check_int
from tokenworks.data.errors import DataNotFoundError, package_dir

__all__ = [
    "BVH",
    "FPS",
    "JOINTS",
    "LABELS",
    "MAX_FRAMES",
    "MotionClip",
    "MotionSet",
    "augment",
    "bvh_positions",
    "clip_windows",
    "deepmimic_positions",
    "features_to_positions",
    "label_index",
    "load_clips",
    "load_motion",
    "positions_to_features",
    "read_bvh",
]

FPS = 20
MAX_FRAMES = 48
MIN_FRAMES = 16
LEG = 0.421546 + 0.40987  # DeepMimic hip -> knee -> ankle (m)
JOINTS = (
    "root", "chest", "neck",
    "right_hip", "right_knee", "right_ankle", "right_shoulder", "right_elbow", "right_wrist",
    "left_hip", "left_knee", "left_ankle", "left_shoulder", "left_elbow", "left_wrist",
)  # fmt: skip
PARENTS = (-1, 0, 1, 0, 3, 4, 1, 6, 7, 0, 9, 10, 1, 12, 13)  # for drawing stick figures
MIRROR = tuple(JOINTS.index(j.replace("right", "LEFT").replace("left", "right").replace("LEFT", "left")) for j in JOINTS)
FEATURES = 1 + 2 + 3 * (len(JOINTS) - 1)

LABELS = {
    "walk": "a person walks forward",
    "run": "a person runs forward",
    "jump": "a person jumps forward with both feet",
    "kick": "a person kicks with one leg",
    "punch": "a person punches with the fists",
    "dance": "a person dances",
    "getup": "a person gets up from the ground",
    "crawl": "a person crawls on hands and knees",
    "climb": "a person climbs and hangs on a playground frame",
    "flip": "a person flips or rolls over",
    "spin": "a person spins around on the spot",
}
_CLIP_LABEL = {
    "01_01": "jump", "01_03": "climb", "Boxing_Toes": "punch",
    "backflip": "flip", "cartwheel": "flip", "crawl": "crawl", "dance_a": "dance", "dance_b": "dance",
    "getup_facedown": "getup", "getup_faceup": "getup", "jump": "jump", "kick": "kick", "punch": "punch",
    "roll": "flip", "run": "run", "spin": "spin", "spinkick": "kick", "walk": "walk",
}  # fmt: skip
BVH_MAP = {  # fixed joint -> candidate BVH joint names (first present wins)
    "root": ("Hips",), "chest": ("Spine1", "Chest"), "neck": ("Neck",),
    "right_hip": ("RightUpLeg", "RightHip"), "right_knee": ("RightLeg", "RightKnee"), "right_ankle": ("RightFoot", "RightAnkle"),
    "right_shoulder": ("RightArm", "RightShoulder"), "right_elbow": ("RightForeArm", "RightElbow"), "right_wrist": ("RightHand", "RightWrist"),
    "left_hip": ("LeftUpLeg", "LeftHip"), "left_knee": ("LeftLeg", "LeftKnee"), "left_ankle": ("LeftFoot", "LeftAnkle"),
    "left_shoulder": ("LeftArm", "LeftShoulder"), "left_elbow": ("LeftForeArm", "LeftElbow"), "left_wrist": ("LeftHand", "LeftWrist"),
}  # fmt: skip


def label_index(label: str) -> int:
    """Index of ``label`` in ``LABELS`` (an unknown label raises naming the known ones)."""
    if label not in LABELS:
        raise ValueError(f"label must be one of {', '.join(LABELS)}, got {label!r}")
    return list(LABELS).index(label)


# ----------------------------------------------------------------------------- rotations
def _axis_rot(axis: str, deg: np.ndarray) -> np.ndarray:
    a = np.deg2rad(np.asarray(deg, dtype=np.float64))
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    if axis == "X":
        m = [[o, z, z], [z, c, -s], [z, s, c]]
    elif axis == "Y":
        m = [[c, z, s], [z, o, z], [-s, z, c]]
    else:
        m = [[c, -s, z], [s, c, z], [z, z, o]]
    return np.moveaxis(np.array(m), (0, 1), (-2, -1))


def _quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions (w, x, y, z) -> (..., 3, 3) rotation matrices (normalised first)."""
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    m = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
         [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
         [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]  # fmt: skip
    return np.moveaxis(np.array(m), (0, 1), (-2, -1))


# ----------------------------------------------------------------------------- BVH
@dataclass
class BVH:
    """A parsed BVH file: joints in file order with parent index, offset and channel names,
    and the motion as a (frames, channels) array in degrees / file units."""

    names: list[str]
    parents: list[int]
    offsets: np.ndarray  # (J, 3)
    channels: list[list[str]]
    frame_time: float
    motion: np.ndarray  # (F, C)
    end_sites: list[tuple[int, np.ndarray]] = field(default_factory=list)

    def channel_slices(self) -> list[slice]:
        out, k = [], 0
        for ch in self.channels:
            out.append(slice(k, k + len(ch)))
            k += len(ch)
        return out


_CHANNELS = {"Xposition", "Yposition", "Zposition", "Xrotation", "Yrotation", "Zrotation"}


def read_bvh(path: str | os.PathLike) -> BVH:
    """Parse a BVH file; a malformed one raises FileFormatError naming the file and the problem."""
    path = Path(path)
    text = path.read_text(encoding="utf-8", errors="replace")
    head, sep, motion = text.partition("MOTION")
    if not sep:
        raise FileFormatError(str(path), "is not a BVH file (no MOTION section)")
    tok = head.split()
    if not tok or tok[0] != "HIERARCHY":
        raise FileFormatError(str(path), "is not a BVH file (does not start with HIERARCHY)")
    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    channels: list[list[str]] = []
    ends: list[tuple[int, np.ndarray]] = []
    stack: list[int] = []
    i, pending, in_end = 1, None, False
    try:
        while i < len(tok):
            t = tok[i]
            if t in ("ROOT", "JOINT"):
                if (t == "ROOT") != (not stack and not names):
                    raise FileFormatError(str(path), f"has {t} {tok[i + 1]} in the wrong place")
                pending = ("joint", tok[i + 1])
                i += 2
            elif t == "End":
                pending, in_end = ("end", None), True
                i += 2
            elif t == "{":
                if pending is None:
                    raise FileFormatError(str(path), "has a '{' without a joint")
                if pending[0] == "joint":
                    names.append(pending[1])
                    parents.append(stack[-1] if stack else -1)
                    offsets.append([0.0, 0.0, 0.0])
                    channels.append([])
                    stack.append(len(names) - 1)
                else:
                    stack.append(-2)
                pending = None
                i += 1
            elif t == "}":
                if not stack:
                    raise FileFormatError(str(path), "has an unbalanced '}'")
                if stack.pop() == -2:
                    in_end = False
                i += 1
            elif t == "OFFSET":
                off = [float(v) for v in tok[i + 1 : i + 4]]
                if in_end:
                    ends.append((stack[-2], np.array(off)))
                else:
                    offsets[stack[-1]] = off
                i += 4
            elif t == "CHANNELS":
                n = int(tok[i + 1])
                ch = tok[i + 2 : i + 2 + n]
                if len(ch) != n or not set(ch) <= _CHANNELS:
                    raise FileFormatError(str(path), f"has bad channels for joint {names[stack[-1]]}: {ch}")
                channels[stack[-1]] = ch
                i += 2 + n
            else:
                raise FileFormatError(str(path), f"has an unexpected word {t!r} in HIERARCHY")
    except (IndexError, ValueError) as e:
        if isinstance(e, FileFormatError):
            raise
        raise FileFormatError(str(path), f"has a malformed HIERARCHY ({e})") from None
    if stack or not names:
        raise FileFormatError(str(path), "has an unbalanced or empty HIERARCHY")
    m_frames = re.search(r"Frames:\s*(\d+)", motion)
    m_time = re.search(r"Frame Time:\s*([0-9.eE+-]+)", motion)
    if not m_frames or not m_time:
        raise FileFormatError(str(path), "has no 'Frames:' / 'Frame Time:' lines")
    body = motion[m_time.end() :].split()
    n_ch = sum(len(c) for c in channels)
    n_frames = int(m_frames.group(1))
    if len(body) < n_frames * n_ch or len(body) % n_ch:  # Boxing_Toes holds one frame more than it declares
        raise FileFormatError(str(path), f"declares {n_frames} frames of {n_ch} channels but holds {len(body)} numbers")
    body = body[: n_frames * n_ch]
    try:
        data = np.array(body, dtype=np.float64).reshape(n_frames, n_ch)
    except ValueError:
        raise FileFormatError(str(path), "has non-numeric motion values") from None
    frame_time = float(m_time.group(1))
    if not np.isfinite(data).all() or not frame_time > 0:
        raise FileFormatError(str(path), "has non-finite motion values or a non-positive frame time")
    return BVH(names, parents, np.array(offsets), channels, frame_time, data, ends)


def bvh_positions(bvh: BVH) -> np.ndarray:
    """World positions (F, J, 3) of every joint by forward kinematics: a joint's world rotation
    is its parent's times its local rotation (channels applied in the order listed, e.g.
    ``Zrotation Yrotation Xrotation`` -> Rz Ry Rx), and its position is the parent's position
    plus the parent's world rotation applied to (offset + position channels)."""
    F, J = bvh.motion.shape[0], len(bvh.names)
    pos = np.zeros((F, J, 3))
    rot = np.zeros((F, J, 3, 3))
    for j, (sl, ch) in enumerate(zip(bvh.channel_slices(), bvh.channels)):
        vals = bvh.motion[:, sl]
        local_r = np.broadcast_to(np.eye(3), (F, 3, 3)).copy()
        local_t = np.broadcast_to(bvh.offsets[j], (F, 3)).copy()
        for k, c in enumerate(ch):
            if c.endswith("rotation"):
                local_r = local_r @ _axis_rot(c[0], vals[:, k])
            else:
                local_t[:, "XYZ".index(c[0])] += vals[:, k]
        p = bvh.parents[j]
        if p < 0:
            rot[:, j], pos[:, j] = local_r, local_t
        else:
            rot[:, j] = rot[:, p] @ local_r
            pos[:, j] = pos[:, p] + np.einsum("fij,fj->fi", rot[:, p], local_t)
    return pos


# ----------------------------------------------------------------------------- DeepMimic
_DM_OFFSETS = {  # pybullet humanoid.urdf offsets / 4 (parent, offset); knees/elbows rotate about z
    "chest": ("root", (0, 0.944604, 0)), "neck": ("chest", (0, 0.895576, 0)),
    "right_hip": ("root", (0, 0, 0.339548)), "right_knee": ("right_hip", (0, -1.686184, 0)),
    "right_ankle": ("right_knee", (0, -1.639480, 0)), "right_shoulder": ("chest", (-0.0962, 0.974, 0.73244)),
    "right_elbow": ("right_shoulder", (0, -1.099152, 0)), "right_wrist": ("right_elbow", (0, -1.035788, 0)),
    "left_hip": ("root", (0, 0, -0.339548)), "left_knee": ("left_hip", (0, -1.686184, 0)),
    "left_ankle": ("left_knee", (0, -1.639480, 0)), "left_shoulder": ("chest", (-0.0962, 0.974, -0.73244)),
    "left_elbow": ("left_shoulder", (0, -1.099152, 0)), "left_wrist": ("left_elbow", (0, -1.035788, 0)),
}  # fmt: skip
# Order of the rotations in a frame after [duration, root xyz, root quat]: (joint, dofs).
_DM_LAYOUT = (("chest", 4), ("neck", 4), ("right_hip", 4), ("right_knee", 1), ("right_ankle", 4), ("right_shoulder", 4),
              ("right_elbow", 1), ("left_hip", 4), ("left_knee", 1), ("left_ankle", 4), ("left_shoulder", 4), ("left_elbow", 1))  # fmt: skip


def deepmimic_positions(frames: np.ndarray) -> np.ndarray:
    """(F, 44) DeepMimic humanoid frames -> (F, 15, 3) positions of ``JOINTS`` (metres, y up)."""
    F = frames.shape[0]
    rot = {"root": _quat_to_matrix(frames[:, 4:8])}
    pos = {"root": frames[:, 1:4].copy()}
    local = {}
    k = 8
    for name, dof in _DM_LAYOUT:
        v = frames[:, k : k + dof]
        local[name] = _quat_to_matrix(v) if dof == 4 else _axis_rot("Z", np.rad2deg(v[:, 0]))
        k += dof
    for name in JOINTS[1:]:
        parent, off = _DM_OFFSETS[name]
        offset = np.asarray(off) / 4.0
        pos[name] = pos[parent] + np.einsum("fij,j->fi", rot[parent], offset)
        rot[name] = rot[parent] @ local.get(name, np.broadcast_to(np.eye(3), (F, 3, 3)))
    return np.stack([pos[j] for j in JOINTS], 1)


# ----------------------------------------------------------------------------- clips
@dataclass(frozen=True)
class MotionClip:
    """One clip on the fixed skeleton: positions (F, 15, 3) at ``FPS``, its label and natural length."""

    name: str
    source: str
    label: str
    positions: np.ndarray
    length: int  # natural sample length in frames (multiple of 4)

    @property
    def description(self) -> str:
        return LABELS[self.label]


def _resample(pos: np.ndarray, src_dt: float | np.ndarray, fps: float) -> np.ndarray:
    """Linear interpolation of positions from frame times (uniform ``src_dt`` or per-frame
    durations) to ``fps``."""
    if np.ndim(src_dt) == 0:
        t = np.arange(pos.shape[0]) * float(src_dt)
    else:
        t = np.concatenate([[0.0], np.cumsum(src_dt[:-1])])
    new_t = np.arange(0.0, t[-1] + 1e-9, 1.0 / fps)
    flat = pos.reshape(pos.shape[0], -1)
    out = np.stack([np.interp(new_t, t, flat[:, c]) for c in range(flat.shape[1])], 1)
    return out.reshape(len(new_t), *pos.shape[1:])


def _scale_to_leg(pos: np.ndarray) -> np.ndarray:
    i = {j: JOINTS.index(j) for j in ("right_hip", "right_knee", "right_ankle")}
    leg = np.linalg.norm(pos[:, i["right_hip"]] - pos[:, i["right_knee"]], axis=-1) + np.linalg.norm(
        pos[:, i["right_knee"]] - pos[:, i["right_ankle"]], axis=-1
    )
    pos = pos * (LEG / float(np.median(leg)))
    return pos - np.array([0.0, float(np.percentile(pos[..., 1].min(1), 5)), 0.0])  # ground at y = 0


def _bvh_dir() -> Path:
    env = os.environ.get("TOKENWORKS_DATA")
    return Path(env) / "assimp-bvh" if env else Path("/usr/share/assimp/models/BVH")


def _natural(frames: int) -> int:
    return max(MIN_FRAMES, min(MAX_FRAMES, frames) // 4 * 4)


@lru_cache(maxsize=1)
def load_clips() -> tuple[MotionClip, ...]:
    """All 18 clips on the fixed skeleton (cached). Missing packages raise DataNotFoundError
    naming the package and the folder looked in."""
    clips: list[MotionClip] = []
    bdir = _bvh_dir()
    files = sorted(bdir.glob("*.bvh")) if bdir.is_dir() else []
    if not files:
        raise DataNotFoundError(f"the BVH motion clips need the Debian package 'assimp-testmodels' (looked in {bdir}); "
                                "run scripts/install-system-data.sh or set TOKENWORKS_DATA")  # fmt: skip
    for f in files:
        bvh = read_bvh(f)
        world = bvh_positions(bvh)
        idx = []
        for j in JOINTS:
            found = [bvh.names.index(n) for n in BVH_MAP[j] if n in bvh.names]
            if not found:
                raise FileFormatError(str(f), f"has no joint for {j} (looked for {BVH_MAP[j]})")
            idx.append(found[0])
        pos = _scale_to_leg(_resample(world[:, idx], bvh.frame_time, FPS))
        clips.append(MotionClip(f.stem, "cmu-bvh", _CLIP_LABEL.get(f.stem, "jump"), pos, MAX_FRAMES))
    mdir = package_dir("pybullet_data", "pybullet", "the DeepMimic motion clips") / "data" / "motions"
    dm = sorted(mdir.glob("humanoid3d_*.txt"))
    if not dm:
        raise DataNotFoundError(f"no DeepMimic clips in {mdir}; reinstall the PyPI package 'pybullet'")
    for f in dm:
        try:
            d = json.loads(f.read_text())
            frames = np.asarray(d["Frames"], dtype=np.float64)
        except (ValueError, KeyError, TypeError) as e:
            raise FileFormatError(str(f), f"is not a DeepMimic motion file ({e})") from None
        if frames.ndim != 2 or frames.shape[1] != 44 or len(frames) < 2 or not np.isfinite(frames).all():
            raise FileFormatError(str(f), f"must hold (frames, 44) finite humanoid frames, got shape {frames.shape}")
        name = f.stem.removeprefix("humanoid3d_")
        pos = _resample(deepmimic_positions(frames), frames[:, 0], FPS)
        natural = _natural(pos.shape[0] if d.get("Loop") == "wrap" else int(0.8 * pos.shape[0]))
        if d.get("Loop") == "wrap":  # one cycle: tile it, carrying the root displacement on
            cycle, shift = pos[:-1], pos[-1, 0] - pos[0, 0]
            shift[1] = 0.0
            reps = math.ceil(12 * FPS / cycle.shape[0])
            pos = np.concatenate([cycle + k * shift for k in range(reps)] + [pos[-1:] + (reps - 1) * shift], 0)
        clips.append(MotionClip(name, "deepmimic", _CLIP_LABEL[name], _scale_to_leg(pos), natural))
    return tuple(clips)


# ----------------------------------------------------------------------------- features
def _heading(pos: np.ndarray) -> float:
    """Yaw angle (rad) of the body at one frame (15, 3): the left-hip-minus-right-hip vector
    projected on the ground, turned so that the body faces +z with the left hip at +x."""
    across = pos[JOINTS.index("left_hip")] - pos[JOINTS.index("right_hip")]
    return math.atan2(-across[2], across[0])


def _yaw(pos: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    r = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return pos @ r.T


def positions_to_features(pos: np.ndarray) -> np.ndarray:
    """(T, 15, 3) positions -> (T, 45) features in the heading frame of the first frame: root
    height, root planar velocity (x, z; the first frame's is 0) and joints relative to the root."""
    pos = np.asarray(pos, dtype=np.float64)
    if pos.ndim != 3 or pos.shape[1:] != (len(JOINTS), 3):
        raise ValueError(f"pos must have shape (T, {len(JOINTS)}, 3), got {pos.shape}")
    p = _yaw(pos - pos[:1, :1] * np.array([1, 0, 1]), -_heading(pos[0]))
    root = p[:, 0]
    vel = np.diff(root[:, [0, 2]], axis=0, prepend=root[:1, [0, 2]])
    rel = (p[:, 1:] - root[:, None]).reshape(len(p), -1)
    return np.concatenate([root[:, 1:2], vel, rel], 1).astype(np.float32)


def features_to_positions(feat) -> np.ndarray:
    """Inverse of :func:`positions_to_features` up to the first frame's heading and ground
    position: (..., T, 45) -> (..., T, 15, 3). Works on numpy arrays and torch tensors."""
    try:
        import torch

        if isinstance(feat, torch.Tensor):
            root_xz = feat[..., 1:3].cumsum(-2)
            root = torch.stack([root_xz[..., 0], feat[..., 0], root_xz[..., 1]], -1)
            rel = feat[..., 3:].reshape(*feat.shape[:-1], len(JOINTS) - 1, 3)
            return torch.cat([root[..., None, :], root[..., None, :] + rel], -2)
    except ImportError:  # pragma: no cover
        pass
    feat = np.asarray(feat)
    root_xz = feat[..., 1:3].cumsum(-2)
    root = np.stack([root_xz[..., 0], feat[..., 0], root_xz[..., 1]], -1)
    rel = feat[..., 3:].reshape(*feat.shape[:-1], len(JOINTS) - 1, 3)
    return np.concatenate([root[..., None, :], root[..., None, :] + rel], -2)


def augment(pos: np.ndarray, *, mirror: bool = False, yaw: float = 0.0, speed: float = 1.0) -> np.ndarray:
    """Augmentations that keep the motion real: mirror (swap left/right joints and negate the
    body's lateral axis), rotate about the vertical axis by ``yaw`` radians, and play at
    ``speed`` in [0.9, 1.1] (linear resampling in time)."""
    check_float("speed", speed, min=0.9, max=1.1)
    check_float("yaw", yaw)
    out = np.asarray(pos, dtype=np.float64)
    if mirror:  # reflect through the body's sagittal plane at the first frame
        h = _heading(out[0])
        local = _yaw(out, -h)
        local = local[:, list(MIRROR)] * np.array([-1.0, 1.0, 1.0])
        out = _yaw(local, h)
    if yaw:
        out = _yaw(out, yaw)
    if speed != 1.0:
        out = _resample(out, 1.0 / (FPS * speed), FPS)  # each frame lasts 1/(FPS*speed) s
    return out


def clip_windows(clip: MotionClip, window: int, stride: int, split: str = "all") -> list[np.ndarray]:
    """Windows (``window`` frames, every ``stride`` frames) of one clip's ``split`` part
    ("train": first 80%, "test": last 20%, "all"). A window longer than that part raises."""
    check_int("window", window, min=2)
    check_int("stride", stride, min=1)
    check_choice("split", split, ("train", "test", "all"))
    pos = _split(clip.positions, split)
    if window > pos.shape[0]:
        raise ValueError(f"window={window} frames is longer than clip {clip.name!r} ({pos.shape[0]} frames in split {split!r})")
    return [pos[s : s + window] for s in range(0, pos.shape[0] - window + 1, stride)]


def _split(pos: np.ndarray, split: str) -> np.ndarray:
    cut = int(round(0.8 * pos.shape[0]))
    return {"train": pos[:cut], "test": pos[cut:], "all": pos}[split]


@dataclass
class MotionSet:
    """Windows as features: ``features`` (N, MAX_FRAMES, 45) zero-padded past ``lengths`` (N,),
    ``labels`` (N,) indices into ``LABELS``, ``clips`` (N,) clip names."""

    features: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray
    clips: list[str]
    skipped: list[str]

    def __len__(self) -> int:
        return len(self.labels)


def load_motion(split: str = "train", *, stride: int | None = None, augmentations: int = 0, seed: int = 0,
                fixed_length: int | None = None) -> MotionSet:  # fmt: skip
    """Windows of every clip's ``split`` part at the clip's natural length (or ``fixed_length``
    frames), as features. ``augmentations`` extra copies of every train window are made with a
    random mirror, yaw and speed in [0.9, 1.1] (train only)."""
    check_choice("split", split, ("train", "test"))
    stride = check_int("stride", stride if stride is not None else 4, min=1)
    check_int("augmentations", augmentations, min=0, max=20)
    if fixed_length is not None:
        check_int("fixed_length", fixed_length, min=4, max=MAX_FRAMES)
    rng = np.random.default_rng(seed)
    feats, lengths, labels, names, skipped = [], [], [], [], []
    clips = load_clips()
    longest = max(_split(c.positions, split).shape[0] for c in clips)
    need = fixed_length or MIN_FRAMES
    if need > longest:
        raise ValueError(f"fixed_length={need} frames is longer than every clip's {split} part (longest: {longest} frames)")
    for clip in clips:
        n = fixed_length or clip.length
        part = _split(clip.positions, split)
        if n > part.shape[0]:
            skipped.append(clip.name)
            continue
        for w in clip_windows(clip, n, stride, split):
            variants = [w]
            if split == "train":
                for _ in range(augmentations):
                    sp = float(rng.uniform(0.9, 1.1))
                    a = augment(w, mirror=bool(rng.integers(2)), yaw=float(rng.uniform(-math.pi, math.pi)), speed=sp)
                    variants.append(a[: n] if a.shape[0] >= n else np.concatenate([a, a[-1:].repeat(n - a.shape[0], 0)]))
            for v in variants:
                f = np.zeros((MAX_FRAMES, FEATURES), np.float32)
                f[:n] = positions_to_features(v)
                feats.append(f)
                lengths.append(n)
                labels.append(label_index(clip.label))
                names.append(clip.name)
    return MotionSet(np.stack(feats), np.array(lengths), np.array(labels), names, skipped)
