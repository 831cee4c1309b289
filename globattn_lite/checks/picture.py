"""A failed mask exercise as a picture: the expected mask beside the learner's, the cells
that differ outlined. Plain SVG text (no matplotlib), shown by ``check`` in a notebook."""

from __future__ import annotations

import numpy as np

CELL = 14  # pixels per mask entry (smaller for big masks)
TRUE_FILL, FALSE_FILL, DIFF_STROKE = "#3b6ea8", "#f2f2f2", "#d62728"


def _panel(mask: np.ndarray, other: np.ndarray, x0: int, y0: int, cell: int, title: str) -> list[str]:
    n, m = mask.shape
    parts = [f'<text x="{x0}" y="{y0 - 6}" font-family="sans-serif" font-size="12">{title}</text>']
    for q in range(n):
        for k in range(m):
            fill = TRUE_FILL if mask[q, k] else FALSE_FILL
            parts.append(
                f'<rect x="{x0 + k * cell}" y="{y0 + q * cell}" width="{cell}" height="{cell}" '
                f'fill="{fill}" stroke="#ffffff" stroke-width="0.5"/>'
            )
    for q, k in np.argwhere(mask != other):
        parts.append(
            f'<rect x="{x0 + k * cell + 1}" y="{y0 + q * cell + 1}" width="{cell - 2}" '
            f'height="{cell - 2}" fill="none" stroke="{DIFF_STROKE}" stroke-width="2"/>'
        )
    return parts


def mask_difference_svg(expected, got) -> str:
    """SVG of ``expected`` (left) and ``got`` (right), two boolean masks of one shape; row q
    is query q, column k key k, filled = True (may attend); differing cells outlined in red."""
    expected, got = np.asarray(expected, dtype=bool), np.asarray(got, dtype=bool)
    if expected.ndim != 2 or expected.shape != got.shape:
        raise ValueError(f"expected two 2-D masks of one shape, got {expected.shape} and {got.shape}")
    n, m = expected.shape
    cell = max(3, min(CELL, 320 // max(n, m)))
    gap, top = 24, 22
    width, height = 2 * m * cell + gap, n * cell + top + 16
    wrong = int((expected != got).sum())
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">']
    parts += _panel(expected, got, 0, top, cell, "expected")
    parts += _panel(got, expected, m * cell + gap, top, cell, "yours")
    parts.append(
        f'<text x="0" y="{height - 3}" font-family="sans-serif" font-size="11">'
        f"{wrong} of {n * m} cells differ (outlined); row = query q, column = key k</text>"
    )
    parts.append("</svg>")
    return "\n".join(parts)
