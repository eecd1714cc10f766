"""Generated OCR pages whose text is known: seeded and deterministic, for tests and benchmarks.

Each page has a few lines of words, numbers and punctuation in OpenCV's Hershey fonts (several
faces, italic or not, sizes, stroke widths), in a colour that contrasts with a flat, gradient or
noisy background, each line turned by a small angle, and some lines upside down (180 degrees).
Page ``i`` of a seed is the same whatever the number of pages asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

FACES = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX,
    cv2.FONT_HERSHEY_TRIPLEX,
    cv2.FONT_HERSHEY_PLAIN,
    cv2.FONT_HERSHEY_COMPLEX_SMALL,
)
WORDS = (
    "total", "Invoice", "order", "amount", "paid", "due", "Date", "ship", "to", "from", "item",
    "price", "VAT", "net", "OpenVINO", "async", "model", "frame", "camera", "street", "Main",
    "north", "Room", "Floor", "Tel", "Fax", "ref", "page", "of", "and", "the", "Kitchen", "Blue",
    "green", "coffee", "Ticket", "Gate", "seat", "Flight", "exit", "open", "closed", "Monday",
    "June", "sale", "Box", "unit", "qty", "Code", "batch", "lot", "size", "weight", "kg", "cm",
)  # fmt: skip
PUNCTUATED = ("total (42)", "Call (555) 123", "f(x) = 2", "[EUR]", "No. 7", "A-12", "x3", "a/b")
UPSIDE_DOWN_SHARE = 0.15
MAX_TILT_DEGREES = 3.0


@dataclass(frozen=True)
class Page:
    """A generated page: the BGR image, its lines' text top to bottom, and which are upside down."""

    image: np.ndarray
    lines: tuple[str, ...]
    upside_down: tuple[bool, ...]


def sample_pages(count: int, seed: int = 0) -> list[Page]:
    """``count`` generated pages; the same ``seed`` gives the same pages."""
    return [sample_page(index, seed) for index in range(count)]


def sample_page(index: int, seed: int = 0) -> Page:
    """Page ``index`` of ``seed``: 480 to 960 pixels wide, 320 to 736 high (multiples of 32)."""
    rng = np.random.default_rng([seed, index])
    height, width = int(rng.integers(10, 24)) * 32, int(rng.integers(15, 31)) * 32
    ink, paper = _colours(rng)
    image = _background(rng, height, width, paper)
    lines, flipped, y = [], [], 16
    for _ in range(int(rng.integers(3, 7))):
        text = _text(rng)
        upside_down = bool(rng.random() < UPSIDE_DOWN_SHARE)
        mask = _line_mask(rng, text, width - 32, upside_down)
        if mask is None or y + mask.shape[0] > height - 8:
            continue
        x = int(rng.integers(16, width - mask.shape[1] - 15))
        _blend(image[y : y + mask.shape[0], x : x + mask.shape[1]], mask, ink)
        lines.append(text)
        flipped.append(upside_down)
        y += mask.shape[0] + int(rng.integers(4, 24))
    return Page(_finish(rng, image), tuple(lines), tuple(flipped))


def _text(rng: np.random.Generator) -> str:
    """A line of 1 to 4 words, numbers or punctuated phrases."""
    parts = []
    for _ in range(int(rng.integers(1, 5))):
        kind = rng.random()
        if kind < 0.6:
            parts.append(str(rng.choice(WORDS)))
        elif kind < 0.8:
            parts.append(f"{rng.integers(0, 10_000)}" if rng.random() < 0.5 else f"{rng.random() * 100:.2f}")
        else:
            parts.append(str(rng.choice(PUNCTUATED)))
    return " ".join(parts)


def _line_mask(rng: np.random.Generator, text: str, max_width: int, upside_down: bool) -> np.ndarray | None:
    """The ink of ``text`` (uint8 coverage) in a random face, size and stroke, tilted by a small
    angle (and turned 180 degrees when ``upside_down``); ``None`` when wider than ``max_width``."""
    face = int(rng.choice(FACES)) | (cv2.FONT_ITALIC if rng.random() < 0.15 else 0)
    (_, unit_h), _ = cv2.getTextSize("Hg", face, 1.0, 1)
    scale = float(rng.uniform(15, 40)) / unit_h
    thickness = int(rng.integers(1, max(2, round(scale * 2)) + 1))
    (w, h), base = cv2.getTextSize(text, face, scale, thickness)
    pad = h // 2 + thickness
    mask = np.zeros((h + base + 2 * pad, w + 2 * pad), np.uint8)
    cv2.putText(mask, text, (pad, pad + h), face, scale, 255, thickness, cv2.LINE_AA)
    angle = float(rng.uniform(-MAX_TILT_DEGREES, MAX_TILT_DEGREES)) + (180.0 if upside_down else 0.0)
    mask = _rotated(mask, angle)
    return mask if mask.shape[1] <= max_width else None


def _rotated(mask: np.ndarray, degrees: float) -> np.ndarray:
    """``mask`` turned by ``degrees`` about its centre, on a canvas that holds all of it."""
    h, w = mask.shape
    cos, sin = abs(math.cos(math.radians(degrees))), abs(math.sin(math.radians(degrees)))
    out_w, out_h = math.ceil(w * cos + h * sin), math.ceil(w * sin + h * cos)
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    matrix[:, 2] += ((out_w - w) / 2, (out_h - h) / 2)
    return cv2.warpAffine(mask, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR)


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Ink and paper colours (BGR) whose grey levels differ by at least 110."""
    while True:
        ink, paper = rng.integers(0, 256, (2, 3))
        if abs(_grey(ink) - _grey(paper)) >= 110:
            return ink.astype(np.float32), paper.astype(np.float32)


def _grey(bgr: np.ndarray) -> float:
    return float(0.114 * bgr[0] + 0.587 * bgr[1] + 0.299 * bgr[2])


def _background(rng: np.random.Generator, height: int, width: int, paper: np.ndarray) -> np.ndarray:
    """A float32 page of ``paper``, or a gradient from it to a shade up to 50 grey levels off."""
    page = np.empty((height, width, 3), np.float32)
    page[:] = paper
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * math.pi)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        ramp = xs * math.cos(angle) + ys * math.sin(angle)
        ramp = (ramp - ramp.min()) / max(1e-6, float(ramp.max() - ramp.min()))
        shift = np.float32(rng.uniform(-50, 50)) * np.sign(127.5 - _grey(paper))
        page += ramp[..., None] * shift
    return page


def _blend(region: np.ndarray, mask: np.ndarray, ink: np.ndarray) -> None:
    """``ink`` painted over ``region`` (float32, in place) with ``mask`` as coverage."""
    alpha = (mask.astype(np.float32) / 255)[..., None]
    region *= 1 - alpha
    region += alpha * ink


def _finish(rng: np.random.Generator, page: np.ndarray) -> np.ndarray:
    """The page as uint8, with Gaussian noise on some pages and a slight blur on others."""
    if rng.random() < 0.4:
        page += rng.normal(0, rng.uniform(4, 12), page.shape).astype(np.float32)
    image = np.clip(np.round(page), 0, 255).astype(np.uint8)
    return cv2.GaussianBlur(image, (3, 3), 0) if rng.random() < 0.25 else image
