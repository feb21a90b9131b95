"""The digits scenario's other two targets, rendered offline from the fonts matplotlib ships.

- `plates_0_4`: digits 0-4 printed on number-plate-like backgrounds: a plate colour (white,
  yellow, grey, blue, and some light-on-dark plates), a border, the car around it, a perspective
  warp, blur, sensor noise and uneven lighting. Same task as `digits_0_4`, different domain: the
  material's domain-adaptation target.
- `letters`: the capitals A-E in several fonts, rotated, sheared, scaled, thickened or thinned,
  on paper of varying tone. Different domain and different task.

Every image is drawn from its own generator seeded by (seed, kind, index), so a set is the same
on every machine and call, whatever else is drawn first. Glyphs come from the DejaVu, STIX and
Computer Modern fonts in matplotlib's `mpl-data`, so nothing is downloaded. Rendering happens at
`CANVAS` pixels with PIL, the photometric effects (lighting, noise) are vectorised over the
whole set, and results are memoised per (kind, size, count, seed).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

CANVAS = 48  # rendering resolution; images are resized to the requested size afterwards
PER_CLASS = 200
PLATE_DIGITS = "01234"
LETTERS = "ABCDE"
FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSansMono.ttf",
         "DejaVuSansMono-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "STIXGeneral.ttf",
         "STIXGeneralBol.ttf", "cmr10.ttf", "cmss10.ttf", "cmtt10.ttf")
# (plate colour, ink colour): dark ink on light plates, and a few light-on-dark plates.
PLATES = (((236, 236, 230), (20, 20, 20)), ((245, 200, 40), (15, 15, 15)), ((200, 205, 210), (25, 25, 60)),
          ((170, 210, 235), (10, 20, 60)), ((30, 60, 140), (240, 240, 240)), ((25, 25, 25), (235, 235, 235)))
PLATE_WEIGHTS = (0.35, 0.25, 0.12, 0.1, 0.1, 0.08)
_KIND_SALT = {"plates": 1, "letters": 2, "printed": 3}


def font_path(name: str) -> Path:
    """The path of a font file shipped inside matplotlib's data folder."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name


@functools.lru_cache(maxsize=64)
def _font(name: str, size: int):
    from PIL import ImageFont

    return ImageFont.truetype(str(font_path(name)), size)


def _perspective_coefficients(source: np.ndarray, target: np.ndarray) -> list[float]:
    """PIL's 8 PERSPECTIVE coefficients mapping output corners `target` to input corners `source`."""
    rows = []
    for (x, y), (u, v) in zip(target, source):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    return np.linalg.solve(np.array(rows, dtype=np.float64), source.reshape(-1)).tolist()


def _glyph(draw, text: str, font, center: tuple[float, float], fill) -> None:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    draw.text((center[0] - (left + right) / 2, center[1] - (top + bottom) / 2), text, font=font, fill=fill)


def _plate(rng: np.random.Generator, digit: str):
    from PIL import Image, ImageDraw, ImageFilter

    c = CANVAS
    plate, ink = PLATES[rng.choice(len(PLATES), p=PLATE_WEIGHTS)]
    jitter = rng.integers(-18, 19, size=3)
    plate = tuple(int(v) for v in np.clip(np.array(plate) + jitter, 0, 255))
    car = tuple(int(v) for v in rng.integers(0, 256, size=3))
    image = Image.new("RGB", (c, c), car)
    draw = ImageDraw.Draw(image)
    margin = rng.uniform(0.02, 0.12, size=2) * c
    box = (margin[0], margin[1] + 0.05 * c, c - margin[0], c - margin[1] - 0.05 * c)
    draw.rectangle(box, fill=plate, outline=ink, width=int(rng.integers(1, 4)))
    font = _font(FONTS[rng.integers(len(FONTS))], int(rng.uniform(0.5, 0.72) * c))
    # Neighbouring characters of the plate, cut by the crop, as on a real plate's single digit.
    for side in (-1, 1):
        if rng.random() < 0.5:
            neighbour = str(rng.integers(10)) if rng.random() < 0.6 else chr(65 + rng.integers(26))
            _glyph(draw, neighbour, font, (c / 2 + side * rng.uniform(0.62, 0.75) * c, c / 2), ink)
    _glyph(draw, digit, font, (c / 2 + rng.normal(0, 0.03) * c, c / 2 + rng.normal(0, 0.03) * c), ink)
    corners = np.array([[0, 0], [c, 0], [c, c], [0, c]], dtype=np.float64)
    warped = corners + rng.uniform(-0.12, 0.12, size=(4, 2)) * c
    image = image.transform((c, c), Image.PERSPECTIVE, _perspective_coefficients(warped, corners),
                            Image.BILINEAR, fillcolor=car)
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 1.3)))


def _letter(rng: np.random.Generator, letter: str):
    from PIL import Image, ImageDraw, ImageFilter

    c = CANVAS
    paper = int(rng.integers(170, 256))
    tone = int(rng.integers(0, 90))
    image = Image.new("L", (c, c), paper)
    draw = ImageDraw.Draw(image)
    font = _font(FONTS[rng.integers(len(FONTS))], int(rng.uniform(0.45, 0.75) * c))
    _glyph(draw, letter, font, (c / 2 + rng.normal(0, 0.05) * c, c / 2 + rng.normal(0, 0.05) * c), tone)
    shear = rng.uniform(-0.3, 0.3)
    image = image.transform((c, c), Image.AFFINE, (1, shear, -shear * c / 2, 0, 1, 0), Image.BILINEAR,
                            fillcolor=paper)
    image = image.rotate(rng.uniform(-20, 20), Image.BILINEAR, fillcolor=paper)
    stroke = rng.random()
    if stroke < 0.25:
        image = image.filter(ImageFilter.MinFilter(3))  # thicker strokes (dark ink spreads)
    elif stroke > 0.85:
        image = image.filter(ImageFilter.MaxFilter(3))  # thinner strokes
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 1.0))).convert("RGB")


def _printed(rng: np.random.Generator, digit: str):
    """A digit in the same fonts as the plates, black on white paper: the plates without the plate."""
    from PIL import Image, ImageDraw

    c = CANVAS
    image = Image.new("L", (c, c), int(rng.integers(235, 256)))
    font = _font(FONTS[rng.integers(len(FONTS))], int(rng.uniform(0.5, 0.72) * c))
    _glyph(ImageDraw.Draw(image), digit, font, (c / 2 + rng.normal(0, 0.03) * c, c / 2 + rng.normal(0, 0.03) * c),
           int(rng.integers(0, 40)))
    return image.convert("RGB")


def _lighting_and_noise(images: np.ndarray, rng: np.random.Generator, noise: tuple[float, float]) -> np.ndarray:
    """Uneven lighting (a random linear gradient per image) and Gaussian sensor noise, on the whole set."""
    n, h, w, _ = images.shape
    ys, xs = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    angle = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    strength = rng.uniform(0.0, 0.35, size=(n, 1, 1))
    gain = 1.0 + strength * (np.cos(angle) * xs + np.sin(angle) * ys) + rng.uniform(-0.15, 0.1, size=(n, 1, 1))
    sigma = rng.uniform(*noise, size=(n, 1, 1, 1))
    out = images.astype(np.float32) * gain[..., None] + rng.normal(size=images.shape).astype(np.float32) * sigma
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=8)
def _render(kind: str, size: tuple[int, int], per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    classes, draw = {"plates": (PLATE_DIGITS, _plate), "letters": (LETTERS, _letter),
                     "printed": (PLATE_DIGITS, _printed)}[kind]
    height, width = size
    images = np.empty((len(classes) * per_class, height, width, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(len(classes), dtype=np.int64), per_class)
    salt = _KIND_SALT[kind]
    for i, label in enumerate(labels):
        image = draw(np.random.default_rng([seed, salt, i]), classes[label])
        images[i] = np.asarray(image.resize((width, height), Image.BILINEAR) if (height, width) != (CANVAS, CANVAS)
                               else image)
    rng = np.random.default_rng([seed, salt, len(labels)])
    if kind != "printed":
        images = _lighting_and_noise(images, rng, (2.0, 12.0) if kind == "plates" else (0.0, 8.0))
    order = np.random.default_rng([seed, salt, -1 % 2**32]).permutation(len(labels))
    images, labels = images[order], labels[order]
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def render(kind: str, size: tuple[int, int] = (32, 32), per_class: int = PER_CLASS,
           seed: int = 0) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(uint8 RGB images [N, H, W, 3], int64 labels [N], class names) of `kind`: "plates", "letters",
    or "printed" (digits 0-4 in the plates' fonts, black on white paper, no plate: a clean source
    domain for experiments on the plates' photometric shift).

    `per_class` images of each class at `size` (height, width), in a seeded shuffled order; the
    same arguments give the same pixels on every call (memoised, returned as fresh copies).
    """
    if kind not in _KIND_SALT:
        raise ValueError(f"synthetic kind must be plates, letters or printed, got {kind!r}")
    images, labels = _render(kind, tuple(int(s) for s in size), int(per_class), int(seed))
    return images.copy(), labels.copy(), tuple(LETTERS if kind == "letters" else PLATE_DIGITS)
