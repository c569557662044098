"""The playground: a page at ``/`` that draws digits and types reviews against the native JSON API.

Plain HTML, CSS and JavaScript shipped in the package (``static/``, package data in pyproject.toml), so a
wheel or a container image serves it offline, with no CDN. Like ``/docs``, the page itself needs no
token; its calls to ``/api/v1`` send the one typed into it.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC_FOLDER = Path(__file__).resolve().parent / "static"
PAGE = STATIC_FOLDER / "index.html"
ASSETS_PATH = "/playground"


def mount_playground(app: FastAPI) -> None:
    """``GET /`` answers the page; ``/playground/*`` its script and style sheet."""
    if not PAGE.is_file():
        raise RuntimeError(f"{PAGE} is missing: the package was built without its package data")
    app.mount(ASSETS_PATH, StaticFiles(directory=STATIC_FOLDER), name="playground")

    @app.get("/", include_in_schema=False)
    async def playground() -> FileResponse:
        # no-cache: the browser revalidates (ETag), so a server upgrade never shows a stale page.
        return FileResponse(PAGE, media_type="text/html", headers={"Cache-Control": "no-cache"})
