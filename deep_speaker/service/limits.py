"""What the service refuses, and how much it runs at once: its own module, so the command line reads the defaults
without importing the web framework."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceLimits:
    max_upload_bytes: int = 20 * 1024 * 1024  # a whole request, all files together
    max_seconds: float = 120.0  # per recording, from its header, before decoding
    max_diarize_seconds: float = 600.0  # per recording to diarize (a conversation is longer than a voice sample)
    max_concurrent: int = 2  # requests running the model at once (the machine's cores)
    queue_seconds: float = 30.0  # how long a request waits for a free slot before 503
    max_files: int = 20  # per enrolment
