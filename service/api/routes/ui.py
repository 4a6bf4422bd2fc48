"""The web page at /ui: static files that call the public JSON API, nothing else."""

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse

STATIC = Path(__file__).resolve().parents[2] / "ui" / "static"
_MEDIA_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
_ASSETS = frozenset(p.name for p in STATIC.iterdir() if p.suffix in _MEDIA_TYPES)
_REVALIDATE = {"Cache-Control": "no-cache"}  # a new release's page is never served stale

router = APIRouter(include_in_schema=False)


@router.get("/")
@router.get("/ui")  # to /ui/, so that the page's relative URLs resolve under it
async def to_page(request: Request) -> RedirectResponse:
    query = request.url.query
    return RedirectResponse(f"ui/?{query}" if query else "ui/")


@router.get("/ui/")
async def page() -> FileResponse:
    return _asset("index.html")


@router.get("/ui/{name}")
async def asset(name: str) -> FileResponse:
    if name not in _ASSETS:
        raise HTTPException(404)
    return _asset(name)


def _asset(name: str) -> FileResponse:
    path = STATIC / name
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=_REVALIDATE)
