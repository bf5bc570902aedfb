"""Which browser origins may call the edge (CORS): ``Settings.cors``, ``RILL_CORS__…``."""

from __future__ import annotations

import pydantic

__all__ = ["CorsSettings"]


class CorsSettings(pydantic.BaseModel):
    """Cross-origin access to the HTTP edge, for pages served from another origin.

    Off by default: a page on another origin can call nothing. The edge's own page (same origin)
    needs none of it.
    """

    model_config = pydantic.ConfigDict(extra="forbid")

    allow_origins: list[str] = pydantic.Field(
        default_factory=list,
        description="origins (scheme://host[:port]) allowed to call the edge; ['*']: any; empty: none",
    )
    allow_credentials: bool = pydantic.Field(
        False, description="let browsers send cookies/HTTP auth cross-origin (never with '*')"
    )
    max_age: int = pydantic.Field(7200, ge=0, description="seconds a browser may cache a preflight answer")

    @pydantic.model_validator(mode="after")
    def _no_wildcard_with_credentials(self) -> CorsSettings:
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError("allow_credentials cannot be used with allow_origins ['*']")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.allow_origins)
