"""The toy world: procedural videos whose edits have an exact right answer.

A scene is one or two objects (circle, square, triangle, star, diamond) in one of eight colours,
moving along smooth paths (some growing or shrinking, some crossing each other, so one
occludes the other) over a plain or textured (striped, checkered) background. Its caption is
built from the scene ("a red circle and a blue star moving on a striped gray background").
An edit changes one attribute (an object's colour or shape, the background's colour or
texture) and re-renders *the same motion*, which gives the ground-truth edited video and the
mask of the pixels the edit is allowed to change.

Pure NumPy, deterministic: scene ``i`` of ``ToyWorld(seed)`` is always the same, and the class
is a random-access data source (``len`` and ``[i]``) for grain.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (240, 140, 20),
    "yellow": (235, 215, 30),
    "green": (40, 180, 60),
    "cyan": (30, 200, 210),
    "blue": (40, 70, 220),
    "purple": (150, 50, 200),
    "pink": (240, 120, 190),
}
OBJECT_COLORS = tuple(COLORS)
BACKGROUND_COLORS: dict[str, tuple[int, int, int]] = {
    "gray": (120, 120, 120), "black": (20, 20, 20), "white": (235, 235, 235), "blue": (40, 60, 140),
    "green": (40, 110, 50), "brown": (120, 80, 40),
}
SHAPES = ("circle", "square", "triangle", "star", "diamond")
TEXTURES = ("plain", "striped", "checkered")
EDIT_KINDS = ("object_color", "object_shape", "background_color", "background_texture")


@dataclasses.dataclass(frozen=True)
class ToyObject:
    shape: str
    color: str
    start: tuple[float, float]  # centre at t=0, in [0, 1] image coordinates (y, x)
    velocity: tuple[float, float]  # image fractions per frame
    wobble: tuple[float, float]  # amplitude (y, x) of a sinusoidal drift
    period: float  # frames per wobble cycle
    size: float  # radius as a fraction of the image side
    growth: float  # relative size change per frame (scale change)
    angle: float  # initial rotation (radians)
    spin: float  # rotation per frame

    def at(self, t: float) -> tuple[float, float, float, float]:
        """Centre (y, x), radius and angle at frame ``t``; positions bounce off the borders."""
        phase = 2 * np.pi * t / self.period
        y = self.start[0] + self.velocity[0] * t + self.wobble[0] * np.sin(phase)
        x = self.start[1] + self.velocity[1] * t + self.wobble[1] * np.cos(phase)
        r = self.size * (1 + self.growth * t)
        return _bounce(y, r), _bounce(x, r), r, self.angle + self.spin * t


@dataclasses.dataclass(frozen=True)
class Scene:
    objects: tuple[ToyObject, ...]
    background: str  # colour name
    texture: str  # plain | striped | checkered

    @property
    def caption(self) -> str:
        objs = " and ".join(f"{_article(o.color)} {o.color} {o.shape}" for o in self.objects)
        bg = self.background if self.texture == "plain" else f"{self.texture} {self.background}"
        return f"{objs} moving on a {bg} background"


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _bounce(p: float, r: float) -> float:
    """Reflect a coordinate into [r, 1 - r] (a ball bouncing between the walls)."""
    lo, hi = min(r, 0.5), max(1 - r, 0.5)
    span = hi - lo
    if span <= 0:
        return 0.5
    q = (p - lo) % (2 * span)
    return lo + (q if q <= span else 2 * span - q)


def _shape_mask(shape: str, yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, r: float, angle: float,
                px: float) -> np.ndarray:
    """Coverage in [0, 1] of a shape at every pixel, with a one-pixel soft edge (``px`` = pixel size)."""
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy  # rotated coordinates
    if shape == "circle":
        d = np.sqrt(dx**2 + dy**2) - r
    elif shape == "square":
        d = np.maximum(np.abs(u), np.abs(v)) - r * 0.85
    elif shape == "diamond":
        d = (np.abs(u) + np.abs(v)) / np.sqrt(2) - r * 0.75
    elif shape in ("triangle", "star"):
        n = 3 if shape == "triangle" else 5
        theta = np.arctan2(v, u)
        rho = np.sqrt(u**2 + v**2)
        sector = 2 * np.pi / n
        a = np.mod(theta + np.pi / 2, sector) - sector / 2  # angle from the nearest vertex direction
        if shape == "triangle":  # distance to the edges of a regular triangle of circumradius r
            d = rho * np.cos(np.pi / n - np.abs(a)) - r * np.cos(np.pi / n)
        else:  # a five-pointed star: radius swings between the outer r and inner 0.45 r
            edge = r * (0.45 + 0.55 * (np.abs(a) / (sector / 2) - 1) ** 2)
            d = rho - edge
    else:
        raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")
    return np.clip(0.5 - d / px, 0.0, 1.0)


def _background(bg: str, texture: str, size: int) -> np.ndarray:
    base = np.asarray(BACKGROUND_COLORS[bg], np.float32)
    img = np.broadcast_to(base, (size, size, 3)).copy()
    if texture == "plain":
        return img
    yy, xx = np.mgrid[0:size, 0:size]
    period = max(4, size // 8)
    if texture == "striped":
        on = ((yy + xx) // (period // 2)) % 2 == 0
    elif texture == "checkered":
        on = ((yy // period) + (xx // period)) % 2 == 0
    else:
        raise ValueError(f"unknown texture {texture!r}; known: {TEXTURES}")
    lighter = np.clip(base * 0.55 + 110, 0, 255)
    img[on] = lighter
    return img


def render(scene: Scene, frames: int, size: int = 64, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 video ``[frames, size, size, 3]`` and per-object coverage ``[frames, objects, size, size]``."""
    px = 1.0 / size
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) * px
    bg = _background(scene.background, scene.texture, size)
    video = np.empty((frames, size, size, 3), np.uint8)
    cover = np.zeros((frames, len(scene.objects), size, size), np.float32)
    for f in range(frames):
        img = bg.copy()
        for k, obj in enumerate(scene.objects):  # later objects are drawn on top (occlusion)
            cy, cx, r, ang = obj.at(start + f)
            m = _shape_mask(obj.shape, yy, xx, cy, cx, r, ang, px)
            cover[f, k] = m
            img = img * (1 - m[..., None]) + np.asarray(COLORS[obj.color], np.float32) * m[..., None]
        video[f] = np.round(img).astype(np.uint8)
    return video, cover


def random_scene(rng: np.random.Generator) -> Scene:
    """A random scene: 1-2 objects of distinct colours, plain or textured background."""
    n = 1 if rng.random() < 0.6 else 2
    colors = rng.choice(OBJECT_COLORS, size=n, replace=False)
    objects = []
    for k in range(n):
        speed = rng.uniform(0.004, 0.02)
        heading = rng.uniform(0, 2 * np.pi)
        objects.append(ToyObject(
            shape=str(rng.choice(SHAPES)), color=str(colors[k]),
            start=(float(rng.uniform(0.25, 0.75)), float(rng.uniform(0.25, 0.75))),
            velocity=(float(speed * np.sin(heading)), float(speed * np.cos(heading))),
            wobble=(float(rng.uniform(0, 0.06)), float(rng.uniform(0, 0.06))),
            period=float(rng.uniform(16, 48)),
            size=float(rng.uniform(0.12, 0.22)),
            growth=float(rng.choice([0.0, 0.0, rng.uniform(-0.004, 0.006)])),
            angle=float(rng.uniform(0, 2 * np.pi)), spin=float(rng.uniform(-0.05, 0.05)),
        ))
    return Scene(tuple(objects), str(rng.choice(list(BACKGROUND_COLORS))), str(rng.choice(TEXTURES, p=[0.5, 0.25, 0.25])))


def edit_scene(scene: Scene, kind: str, rng: np.random.Generator, target: int = 0) -> Scene:
    """The same scene (same motion) with one attribute changed; ``target`` picks the object."""
    if kind == "object_color":
        used = {o.color for o in scene.objects}
        new = str(rng.choice([c for c in OBJECT_COLORS if c not in used]))
        objs = list(scene.objects)
        objs[target] = dataclasses.replace(objs[target], color=new)
        return dataclasses.replace(scene, objects=tuple(objs))
    if kind == "object_shape":
        objs = list(scene.objects)
        new = str(rng.choice([s for s in SHAPES if s != objs[target].shape]))
        objs[target] = dataclasses.replace(objs[target], shape=new)
        return dataclasses.replace(scene, objects=tuple(objs))
    if kind == "background_color":
        return dataclasses.replace(scene, background=str(rng.choice([b for b in BACKGROUND_COLORS if b != scene.background])))
    if kind == "background_texture":
        return dataclasses.replace(scene, texture=str(rng.choice([t for t in TEXTURES if t != scene.texture])))
    raise ValueError(f"unknown edit kind {kind!r}; known: {EDIT_KINDS}")


@dataclasses.dataclass
class ToyEdit:
    """A source clip, its edited ground truth, both captions and the region allowed to change."""

    source: np.ndarray  # uint8 [F, H, W, 3]
    target: np.ndarray  # uint8 [F, H, W, 3]: the same motion with one attribute changed
    mask: np.ndarray  # bool [F, H, W]: pixels that differ between source and target scenes' layouts
    source_caption: str
    target_caption: str
    kind: str
    source_scene: Scene
    target_scene: Scene


class ToyWorld:
    """Random-access toy videos: ``world[i] -> {"video": uint8 [F, S, S, 3], "caption": str}``
    (a grain data source), and :meth:`edit` for ground-truth edits."""

    def __init__(self, seed: int = 0, *, length: int = 100_000, frames: int = 16, size: int = 64):
        if frames < 1 or size < 8 or length < 1:
            raise ValueError(f"need frames >= 1, size >= 8 and length >= 1, got {frames}, {size}, {length}")
        self.seed, self.length, self.frames, self.size = seed, length, frames, size

    def __len__(self) -> int:
        return self.length

    def scene(self, index: int) -> Scene:
        return random_scene(np.random.default_rng([self.seed, index]))

    def __getitem__(self, index: int) -> dict:
        scene = self.scene(index)
        video, _ = render(scene, self.frames, self.size)
        return {"video": video, "caption": scene.caption}

    def edit(self, index: int, kind: str, *, frames: int | None = None) -> ToyEdit:
        """Scene ``index`` and its ``kind`` edit, rendered over the same motion."""
        frames = frames or self.frames
        src = self.scene(index)
        rng = np.random.default_rng([self.seed, index, EDIT_KINDS.index(kind) + 1])
        tgt = edit_scene(src, kind, rng)
        a, ca = render(src, frames, self.size)
        b, cb = render(tgt, frames, self.size)
        if kind.startswith("object"):
            mask = (ca[:, 0] > 0) | (cb[:, 0] > 0)  # the edited object's old and new silhouettes
        else:
            mask = (ca.sum(1) < 1) | (cb.sum(1) < 1)  # wherever background shows
        return ToyEdit(a, b, mask, src.caption, tgt.caption, kind, src, tgt)


class ToyEdits:
    """Ground-truth edit pairs by random access (a grain data source), for training on edits:
    ``edits[i] -> {"video": source, "edited": its edit (same motion), "caption": the edited
    scene's caption}``; the edit's kind cycles through ``kinds`` with the index."""

    def __init__(self, world: ToyWorld, kinds: Sequence[str] = EDIT_KINDS):
        if not kinds or any(k not in EDIT_KINDS for k in kinds):
            raise ValueError(f"edit kinds must be a non-empty subset of {EDIT_KINDS}, got {kinds}")
        self.world, self.kinds = world, tuple(kinds)

    def __len__(self) -> int:
        return len(self.world)

    def __getitem__(self, index: int) -> dict:
        e = self.world.edit(index, self.kinds[index % len(self.kinds)])
        return {"video": e.source, "edited": e.target, "caption": e.target_caption}


def hue_of(rgb: Sequence[float]) -> float:
    """Hue in degrees of an RGB colour (0-255)."""
    r, g, b = (np.asarray(rgb, np.float64) / 255.0)
    mx, mn = max(r, g, b), min(r, g, b)
    if mx == mn:
        return 0.0
    if mx == r:
        h = (g - b) / (mx - mn) % 6
    elif mx == g:
        h = (b - r) / (mx - mn) + 2
    else:
        h = (r - g) / (mx - mn) + 4
    return float(h * 60)


def nearest_color(rgb: Sequence[float]) -> str:
    """The object colour whose hue is closest to ``rgb``'s (attribute accuracy of colour edits)."""
    h = hue_of(rgb)
    dist = {name: min(abs(h - hue_of(c)), 360 - abs(h - hue_of(c))) for name, c in COLORS.items()}
    return min(dist, key=dist.get)
