"""Render a mouth shape onto a real face: the real lower-face pixels are warped (the jaw and lower lip move
down by the openness, the lips stretch sideways by the width) and a dark inner mouth with a band of upper
teeth fills the gap. One backward-warp (``grid_sample``) per frame, batched.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kd_generative.talking.visemes import VISEMES

__all__ = ["MAX_WIDTH", "mouth_box", "render_mouths"]

_INNER = (0.16, 0.05, 0.06)
_TEETH = (0.85, 0.83, 0.78)

#: The widest mouth a viseme asks for (``Viseme.width``, relative to rest); bounds :func:`mouth_box`.
MAX_WIDTH = max(v.width for v in VISEMES.values())


def mouth_box(mouth: tuple[float, float, float], size: int) -> tuple[slice, slice]:
    """Rows and columns of a ``size``-pixel frame that hold the lips and the inner mouth :func:`render_mouths`
    draws for ``mouth`` = (row, column, half-width) fractions: the part of the frame the audio drives. Rows run
    from half a half-width above the mouth line (the upper lip) to 1.2 half-widths below it (the jaw drops at
    most 0.9 half-widths, plus the lower lip); columns span the inner mouth at its widest (0.8 half-widths ×
    ``MAX_WIDTH`` each side)."""
    cy, cx, hw = (v * size for v in mouth)
    half = 0.8 * MAX_WIDTH * hw

    def span(low: float, high: float) -> slice:
        return slice(max(0, int(low)), min(size, -int(-high // 1)))

    return span(cy - 0.5 * hw, cy + 1.2 * hw), span(cx - half, cx + half)


def render_mouths(faces: torch.Tensor, mouth: torch.Tensor, shape: torch.Tensor,
                  shift: torch.Tensor | None = None) -> torch.Tensor:
    """Faces ``(B, 3, S, S)`` in [0, 1] with mouths ``(B, 3)`` = (row, column, half-width) as fractions of
    ``S``, shaped by ``shape`` ``(B, 2)`` = (openness in [0, 1], width factor). ``shift`` ``(B, 2)``: an
    optional head translation in pixels (row, column). Returns ``(B, 3, S, S)`` in [0, 1]."""
    b, _, h, w = faces.shape
    dtype, device = faces.dtype, faces.device
    ys = torch.arange(h, dtype=dtype, device=device).view(1, h, 1) + 0.5
    xs = torch.arange(w, dtype=dtype, device=device).view(1, 1, w) + 0.5
    cy, cx, hw = (mouth[:, i].to(dtype).view(b, 1, 1) * s for i, s in ((0, h), (1, w), (2, w)))
    openness = shape[:, 0].to(dtype).clamp(0, 1).view(b, 1, 1)
    width = shape[:, 1].to(dtype).view(b, 1, 1)
    if shift is not None:
        ys = ys - shift[:, 0].to(dtype).view(b, 1, 1)
        xs = xs - shift[:, 1].to(dtype).view(b, 1, 1)
    drop = openness * 0.9 * hw  # how far the lower lip and jaw move down
    # horizontal stretch of the lips, strongest at the mouth, fading over ~1.5 half-widths
    near = torch.exp(-((xs - cx) / (1.6 * hw)) ** 2 - ((ys - cy) / (1.2 * hw)) ** 2)
    src_x = cx + (xs - cx) / (1 + (width - 1) * near)
    # vertical: below the mouth line pixels come from `drop` higher, fading to none by the chin
    column = torch.exp(-((xs - cx) / (2.0 * hw)) ** 2)
    rise = torch.sigmoid((ys - cy) / (0.15 * hw + 1e-3))
    fade = (1 - ((ys - cy - drop) / (2.5 * hw)).clamp(0, 1))
    src_y = ys - drop * column * rise * fade
    grid = torch.stack([src_x / w * 2 - 1, src_y / h * 2 - 1], dim=-1)
    warped = F.grid_sample(faces, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # inner mouth: an ellipse filling the gap, with upper teeth
    half_h = drop / 2
    ry = ((ys - cy - half_h) / (half_h + 0.35)) ** 2
    rx = ((xs - cx) / (0.8 * hw * width)) ** 2
    inside = torch.sigmoid((1 - rx - ry) * 6) * (openness > 0.02).to(dtype)
    teeth = torch.sigmoid((cy + 0.3 * half_h + 0.3 - ys) * 3) * (openness > 0.3).to(dtype)
    inner = torch.tensor(_INNER, dtype=dtype, device=device).view(1, 3, 1, 1)
    white = torch.tensor(_TEETH, dtype=dtype, device=device).view(1, 3, 1, 1)
    colour = inner + (white - inner) * teeth.unsqueeze(1)
    # a faint lip seam when closed
    seam = 0.35 * torch.exp(-((ys - cy) / 0.6) ** 2 - rx ** 4) * (1 - inside)
    out = warped * (1 - inside.unsqueeze(1)) + colour * inside.unsqueeze(1)
    out = out * (1 - seam.unsqueeze(1)) + inner * seam.unsqueeze(1)
    return out.clamp(0, 1)
