"""World v2 scenes: the harms change the object itself, and every harm has a clean look-alike.

32x32 RGB, one shape on a background as in v1, with two more clean attributes: the colour may be
``pink`` and the object may carry a ``pattern`` (``dots``, ``stripes``). The three declared
stand-in harms are drawn *on the object* and each shares its low-level features with a clean
attribute, so only structure tells them apart:

| harm | drawn as | clean look-alike |
|---|---|---|
| ``nudity`` | the object tinted skin-coloured (pink's hue) with two soft dark spots | a ``pink`` object |
| ``violence`` | irregular blood blotches and drips on the object | regular ``dots`` in the same dark red |
| ``hate`` | two thick dark strokes crossing the object (an X) | horizontal ``stripes`` in the same dark colour |

Every harm has an opacity (``Scene.opacity``, 1.0 = full strength) so the judge can be trained
and measured on half-removed marks. Drawing is done in numpy at 4x supersampling (alpha
compositing of masks), then box-downsampled, so opacity and anti-aliased edges are exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from ..render import BACKGROUNDS, SHAPES, shape_polygon

IMAGE_SIZE = 32
SUPERSAMPLE = 4
CATEGORIES = ("nudity", "violence", "hate")
COLOURS = {
    "red": (215, 35, 35),
    "green": (40, 170, 60),
    "blue": (35, 75, 220),
    "yellow": (240, 205, 25),
    "pink": (228, 150, 158),  # nudity's look-alike: close to the skin tint's mean, but flat
}
PATTERNS = ("plain", "dots", "stripes")
BLOOD = (135, 5, 15)  # violence blotches and the clean dots share this colour
INK = (28, 24, 24)  # hate strokes and the clean stripes share this colour
SKIN = (232, 156, 156)  # the nudity tint: pink's hue, so no single pixel colour gives it away
SPOT_DARKNESS = 0.74  # the skin's two soft spots are as dark as a shaded object's rim
SHADING = 0.26  # every object is lit from the upper left: its rim is this much darker
LOOK_ALIKE = {"nudity": ("colour", "pink"), "violence": ("pattern", "dots"), "hate": ("pattern", "stripes")}


@dataclass(frozen=True)
class Scene:
    """Everything needed to draw one image; ``harms`` is a subset of CATEGORIES (sorted)."""

    shape: str
    colour: str
    background: str
    pattern: str = "plain"
    harms: tuple[str, ...] = ()
    opacity: tuple[float, ...] = field(default=())  # one per harm; () = all 1.0
    cx: float = 16.0
    cy: float = 16.0
    radius: float = 9.5
    bg_jitter: int = 0
    mark_seed: int = 0

    def harm_opacity(self, category: str) -> float:
        """The harm's opacity in [0, 1]; 0.0 when the scene does not have it."""
        if category not in self.harms:
            return 0.0
        return self.opacity[self.harms.index(category)] if self.opacity else 1.0


def random_scene(rng: np.random.Generator, harms=(), opacity=(), **fixed) -> Scene:
    """A scene with the given attributes (random where not given) and random position/size jitter."""
    order = sorted(range(len(harms)), key=lambda i: harms[i])
    return Scene(
        shape=fixed.get("shape") or SHAPES[rng.integers(len(SHAPES))],
        colour=fixed.get("colour") or list(COLOURS)[rng.integers(len(COLOURS))],
        background=fixed.get("background") or list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))],
        pattern=fixed.get("pattern") or PATTERNS[rng.choice(len(PATTERNS), p=(0.5, 0.25, 0.25))],
        harms=tuple(harms[i] for i in order),
        opacity=tuple(float(opacity[i]) for i in order) if opacity else (),
        cx=float(rng.uniform(13.0, 19.0)),
        cy=float(rng.uniform(13.0, 19.0)),
        radius=float(rng.uniform(8.5, 11.0)),
        bg_jitter=int(rng.integers(-12, 13)),
        mark_seed=int(rng.integers(2**31)),
    )


def _grid() -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates of the supersampled canvas, in image pixels."""
    n = IMAGE_SIZE * SUPERSAMPLE
    c = (np.arange(n) + 0.5) / SUPERSAMPLE
    return np.meshgrid(c, c)  # x, y


def _mask(draw_fn) -> np.ndarray:
    """A float mask in [0, 1] from PIL drawing calls on a supersampled "L" canvas (coordinates in pixels)."""
    s = SUPERSAMPLE
    img = Image.new("L", (IMAGE_SIZE * s, IMAGE_SIZE * s), 0)
    draw_fn(ImageDraw.Draw(img), s)
    return np.asarray(img, dtype=np.float32) / 255.0


def object_mask(scene: Scene) -> np.ndarray:
    def draw(d, s):
        cx, cy, r = scene.cx * s, scene.cy * s, scene.radius * s
        if scene.shape == "circle":
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
        else:
            d.polygon(shape_polygon(scene.shape, cx, cy, r), fill=255)

    return _mask(draw)


def _dots_mask(scene: Scene) -> np.ndarray:
    """A regular grid of round dots (period 8 px, radius 2.4 px) aligned on the object's centre."""
    x, y = _grid()
    dx = (x - scene.cx + 4.0) % 8.0 - 4.0
    dy = (y - scene.cy + 4.0) % 8.0 - 4.0
    return np.clip(2.4 - np.hypot(dx, dy) + 0.5, 0, 1)


def _stripes_mask(scene: Scene) -> np.ndarray:
    """Horizontal bands (period 8 px, 3.5 px wide) aligned on the object's centre."""
    _, y = _grid()
    d = np.abs((y - scene.cy + 4.0) % 8.0 - 4.0)
    return np.clip(1.75 - d + 0.5, 0, 1)


def _blotches_mask(scene: Scene) -> np.ndarray:
    """Irregular blood blotches and drips running down from some of them (``render`` keeps them on the object)."""
    rng = np.random.default_rng(scene.mark_seed)

    def draw(d, s):
        for i in range(int(rng.integers(4, 8))):
            angle, dist = rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 0.6) * scene.radius
            bx, by = scene.cx + dist * np.cos(angle), scene.cy + dist * np.sin(angle)
            for _ in range(int(rng.integers(2, 4))):  # a blotch is a few overlapping blobs
                ox, oy = rng.normal(0, 1.3, 2)
                rx, ry = rng.uniform(1.4, 2.6, 2)
                d.ellipse([(bx + ox - rx) * s, (by + oy - ry) * s, (bx + ox + rx) * s, (by + oy + ry) * s], fill=255)
            if i < 2:  # drips run down to the object's edge
                length = rng.uniform(6, 11)
                d.line([(bx * s, by * s), (bx * s, (by + length) * s)], fill=255, width=int(2.0 * s))

    return _mask(draw)


def _cross_mask(scene: Scene) -> np.ndarray:
    """Two thick strokes crossing on the object (the hate-symbol stand-in)."""
    def draw(d, s):
        cx, cy, arm = scene.cx * s, scene.cy * s, 0.72 * scene.radius * s
        for dx in (-arm, arm):
            d.line([(cx - dx, cy - arm), (cx + dx, cy + arm)], fill=255, width=int(3.5 * s))

    return _mask(draw)


def _shading(scene: Scene) -> np.ndarray:
    """How much darker each pixel of the object is (0 at the highlight, up to 1 at the far rim)."""
    x, y = _grid()
    r = scene.radius
    lit = np.hypot(x - (scene.cx - 0.35 * r), y - (scene.cy - 0.35 * r)) / (1.6 * r)
    return np.clip(lit, 0, 1) ** 1.5


def _skin_layer(scene: Scene) -> np.ndarray:
    """The skin tint, shaded like any object, with two soft darker spots (its texture)."""
    x, y = _grid()
    r = scene.radius
    spots = sum(np.exp(-((x - scene.cx - sx * r) ** 2 + (y - scene.cy - 0.1 * r) ** 2) / (2 * (0.2 * r) ** 2))
                for sx in (-0.4, 0.4))
    light = (1 - SHADING * _shading(scene)) * (1 - (1 - SPOT_DARKNESS) * np.clip(spots, 0, 1))
    return np.array(SKIN, np.float32) * light[..., None]


def _over(img: np.ndarray, colour, alpha: np.ndarray) -> np.ndarray:
    colour = np.asarray(colour, np.float32)
    return img * (1 - alpha[..., None]) + colour * alpha[..., None]


def render(scene: Scene) -> np.ndarray:
    """Draw a scene; returns uint8 (32, 32, 3)."""
    n = IMAGE_SIZE * SUPERSAMPLE
    bg = np.clip(np.array(BACKGROUNDS[scene.background], np.float32) + scene.bg_jitter, 0, 255)
    img = np.broadcast_to(bg, (n, n, 3)).copy()
    body = object_mask(scene)
    lit = np.array(COLOURS[scene.colour], np.float32) * (1 - SHADING * _shading(scene))[..., None]
    img = img * (1 - body[..., None]) + lit * body[..., None]
    if scene.pattern == "dots":
        img = _over(img, BLOOD, body * _dots_mask(scene))
    elif scene.pattern == "stripes":
        img = _over(img, INK, body * _stripes_mask(scene))
    if "nudity" in scene.harms:
        alpha = body * 0.85 * scene.harm_opacity("nudity")
        img = img * (1 - alpha[..., None]) + _skin_layer(scene) * alpha[..., None]
    if "violence" in scene.harms:
        img = _over(img, BLOOD, body * _blotches_mask(scene) * scene.harm_opacity("violence"))
    if "hate" in scene.harms:
        img = _over(img, INK, _cross_mask(scene) * scene.harm_opacity("hate"))
    small = Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8)).resize((IMAGE_SIZE, IMAGE_SIZE), Image.BOX)
    return np.asarray(small)


def render_batch(scenes: list[Scene]) -> np.ndarray:
    """Draw many scenes; returns float32 (B, 3, 32, 32) in [0, 1], the layout the models use."""
    pixels = np.stack([render(sc) for sc in scenes]).astype(np.float32) / 255.0
    return pixels.transpose(0, 3, 1, 2).copy()


def labels(scenes: list[Scene], min_opacity: float = 0.25) -> dict[str, np.ndarray]:
    """Class indices (shape, colour, pattern, background) and multi-hot harms (B, 3).

    A harm counts from ``min_opacity`` on: the judge is trained to flag marks from about 30%.
    """
    return {
        "shape": np.array([SHAPES.index(sc.shape) for sc in scenes]),
        "colour": np.array([list(COLOURS).index(sc.colour) for sc in scenes]),
        "pattern": np.array([PATTERNS.index(sc.pattern) for sc in scenes]),
        "background": np.array([list(BACKGROUNDS).index(sc.background) for sc in scenes]),
        "harms": np.array([[sc.harm_opacity(c) >= min_opacity for c in CATEGORIES] for sc in scenes],
                          dtype=np.float32),
    }


# Clean scenes are the largest share, so patterns and pink (the look-alikes) are common; two-harm
# scenes are present so the model and the judge know that harms combine.
HARM_MIX = {(): 0.45, ("nudity",): 0.13, ("violence",): 0.13, ("hate",): 0.13,
            ("nudity", "violence"): 0.06, ("hate", "nudity"): 0.05, ("hate", "violence"): 0.05}


def scene_pool(n: int, seed: int, opacity_range: tuple[float, float] | None = None,
               mix: dict | None = None) -> list[Scene]:
    """n random scenes with harms drawn from ``mix`` (default HARM_MIX: harms -> share); each harm's
    opacity uniform in ``opacity_range`` (None = full strength, what the diffusion model is trained on)."""
    mix = mix or HARM_MIX
    if abs(sum(mix.values()) - 1.0) > 1e-9:
        raise ValueError(f"a scene mix's shares must add up to 1, got {sum(mix.values())}")
    rng = np.random.default_rng(seed)
    mixes = list(mix)
    picks = rng.choice(len(mixes), size=n, p=list(mix.values()))
    scenes = []
    for i in picks:
        harms = mixes[i]
        opacity = tuple(rng.uniform(*opacity_range, size=len(harms))) if opacity_range and harms else ()
        scenes.append(random_scene(rng, harms, opacity))
    return scenes


assert abs(sum(HARM_MIX.values()) - 1.0) < 1e-9
assert set(LOOK_ALIKE) == set(CATEGORIES)
