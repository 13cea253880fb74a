"""CORS: web players live on other origins than the service and the CDN edges.

One policy for every route (manifests, segments, key delivery, license, the play API): origins
from ``service.cors_origins`` (exact) and ``service.cors_origin_regex`` (pattern; by default local
pages on any port), preflight answered, no credentials (tokens travel in URLs or a bearer header,
never in cookies). The headers a player needs to read are exposed: ranges, ETag, license duration.
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from reelflow.infra.settings import ServiceConfig

ALLOW_HEADERS = ("Authorization", "Content-Type", "Range", "If-None-Match", "If-Range", "If-Modified-Since")
EXPOSE_HEADERS = ("Content-Range", "Content-Length", "Accept-Ranges", "ETag", "X-License-Duration", "Date")
METHODS = ("GET", "HEAD", "POST", "PUT", "OPTIONS")


def with_cors(app: ASGIApp, config: ServiceConfig) -> ASGIApp:
    """``app`` wrapped in the service's CORS policy."""
    return CORSMiddleware(
        app,
        allow_origins=list(config.cors_origins),
        allow_origin_regex=config.cors_origin_regex,
        allow_methods=list(METHODS),
        allow_headers=list(ALLOW_HEADERS),
        expose_headers=list(EXPOSE_HEADERS),
        allow_credentials=False,
        max_age=600,
    )
