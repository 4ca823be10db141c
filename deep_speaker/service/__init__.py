"""HTTP service (FastAPI) over the library's encoder, `Verifier` and enrolment store, with a web page."""

from .app import ServiceLimits, SpeakerService, create_app

__all__ = ["ServiceLimits", "SpeakerService", "create_app"]
