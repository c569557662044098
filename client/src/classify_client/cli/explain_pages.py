"""The review page of ``classify explain``: one self-contained HTML file, every token highlighted.

Self-contained (inline CSS, no script, no fonts or images fetched) so it opens anywhere, offline, and
can be mailed; every piece of text from the input or the server goes through ``html.escape``, so a review
that contains markup shows it instead of running it.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

# The end colours of the RdBu palette the image pictures use (explain_pictures.RDBU): blue for, red against.
BLUE = (33, 102, 172)
RED = (178, 24, 43)
STYLE = """
body { font: 15px/1.6 system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.3em; } .legend span { padding: 0 .4em; }
article { border-top: 1px solid #ddd; padding: .6em 0; }
article h2 { font-size: 1em; margin: 0 0 .3em; font-weight: 600; }
.meta { color: #666; font-weight: 400; }
.tokens span { border-radius: 3px; padding: 0 2px; }
details { color: #555; font-size: .9em; } .error { color: #b2182b; }
"""


@dataclass(frozen=True)
class ReviewItem:
    """One review as explained: its first target's tokens and scores, or the error that stopped it."""

    index: int
    id: Any
    source: str
    text: str | None
    label: str = ""
    probability: float = 0.0
    gap: float = 0.0
    tokens: list[str] | None = None
    scores: np.ndarray | None = None
    error: str | None = None


def token_colour(score: float, scale: float) -> str:
    """A CSS background: blue for a positive score, red for a negative one, opacity |score| / scale."""
    strength = min(1.0, abs(score) / scale) if scale > 0 else 0.0
    red, green, blue = BLUE if score >= 0 else RED
    return f"rgba({red},{green},{blue},{strength * 0.85:.3f})"


def review_scale(scores: np.ndarray) -> float:
    """Each review scaled to its own largest |score|: the colours compare words within a review."""
    finite = np.abs(scores[np.isfinite(scores)]) if scores.size else scores
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


def tokens_html(tokens: list[str], scores: np.ndarray) -> str:
    scale = review_scale(scores)
    spans = []
    for token, score in zip(tokens, scores.tolist(), strict=True):
        # Light text on a dark background: the strongest words stay readable.
        ink = "color:#fff;" if abs(score) / scale > 0.6 else ""
        spans.append(
            f'<span style="background:{token_colour(score, scale)};{ink}" title="{score:+.4f}">'
            f"{html.escape(token)}</span>"
        )
    return " ".join(spans)


def review_html(item: ReviewItem) -> str:
    name = html.escape(f"#{item.index}" + (f" {item.id}" if item.id != item.index else ""))
    source = html.escape(item.source)
    if item.error is not None or item.tokens is None or item.scores is None:
        return (
            f'<article><h2>{name} <span class="meta">{source}</span></h2>'
            f'<p class="error">not explained: {html.escape(item.error or "no answer")}</p></article>'
        )
    meta = f"{item.label}, p = {item.probability:.3f}, completeness gap {item.gap:+.3g}"
    original = ""
    if item.text is not None:
        original = f"<details><summary>the review as written</summary>{html.escape(item.text)}</details>"
    return (
        f'<article><h2>{name} {html.escape(meta)} <span class="meta">{source}</span></h2>'
        f'<p class="tokens">{tokens_html(item.tokens, item.scores)}</p>{original}</article>'
    )


def reviews_page(items: Iterable[ReviewItem], heading: str) -> str:
    """The whole page: a heading naming model, method and steps, a legend, then one article a review."""
    legend = (
        f'<p class="legend"><span style="background:rgba({",".join(map(str, BLUE))},.85);color:#fff">for'
        f'</span> the explained class, <span style="background:rgba({",".join(map(str, RED))},.85);'
        'color:#fff">against</span> it; each review scaled to its own largest |score| (hover a word for '
        "its score). The words are the model's own tokens: lower-cased, punctuation dropped, and of a "
        "long review only the head and tail the model reads.</p>"
    )
    body = "\n".join(review_html(item) for item in items)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(heading)}</title><style>{STYLE}</style></head>\n"
        f"<body><h1>{html.escape(heading)}</h1>{legend}\n{body}\n</body></html>\n"
    )
