"""HTTP service (FastAPI) over the library's encoder, `Verifier` and enrolment store, with a web page.

`ServiceLimits` is light (`service.limits`); the app and the service import FastAPI when first used."""

from __future__ import annotations

from .limits import ServiceLimits


def __getattr__(name: str):
    if name in ("SpeakerService", "create_app"):
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ServiceLimits", "SpeakerService", "create_app"]
