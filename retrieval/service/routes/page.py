"""The web page: ``GET /`` (index.html) and ``GET /static/{name}`` (its script and style), outside the API schema."""

from importlib import resources
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path as PathParam
from fastapi.responses import FileResponse

from reldistill.recipe.retrieval import ServeConfig

STATIC = resources.files("reldistill.retrieval") / "static"


async def page():
    return FileResponse(str(STATIC / "index.html"), media_type="text/html")


async def static_file(name: Annotated[str, PathParam(pattern=r"^[a-z0-9_\-]+\.(js|css)$")]):
    f = STATIC / name
    if not f.is_file():
        raise HTTPException(status_code=404, detail="not found")
    return FileResponse(str(f), media_type="text/javascript" if name.endswith(".js") else "text/css")


def router(cfg: ServeConfig) -> APIRouter:
    r = APIRouter()
    r.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    r.add_api_route("/static/{name}", static_file, methods=["GET"], include_in_schema=False)
    return r
