"""The HTTP service: embed, verify, enrol, identify, list, remove, diarize, health, and a web page, on FastAPI.

Decisions are the library's `Verifier`'s (calibrated operating points, "unknown", the spoof gate when one is
given); the enrolment store is the library's (`assembly.open_registry`: SQLite in WAL mode, or a PostgreSQL database that
several service processes share; one connection per worker
thread); turns are the library's `Diarizer`'s. Safety: uploads above `max_upload_bytes` and recordings above
`max_seconds` (`max_diarize_seconds` for diarization) are refused with 413 before
any decoding; at most `max_concurrent` requests run the model at once (others wait up to `queue_seconds`, then
503); enrolling and removing need an API key; audio is decoded by libsndfile from a private temporary file, never
unpickled or executed; every error is JSON `{"error": {"code", "message"}}` with no stack trace.
"""

from __future__ import annotations

import hmac
import re
import tempfile
import threading
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict, replace
from pathlib import Path

import soundfile as sf
from fastapi import FastAPI, File, Form, Request, Security, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException

from ..assembly import open_registry
from ..diarization import rttm_text
from ..diarization.pipeline import Diarizer
from ..enrol import Registry, is_database_url, store_name
from ..errors import AudioError, AudioLimitError, DeepSpeakerError, NoSpeechError, SpeakerExistsError, UnknownSpeakerError
from ..scoring.calibration import OPERATING_POINTS
from ..verification import Verifier
from .limits import ServiceLimits

PAGE = Path(__file__).resolve().parent / "page.html"
API_KEY_HEADER = "X-API-Key"
API_KEY = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="a key the service was started with (--api-key)")
DOCS_ASSETS = "/docs-assets"


class ServiceError(Exception):
    """An HTTP error with a stable code, rendered as JSON."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _code(error: Exception) -> str:
    """CorruptAudioError -> corrupt_audio: the class names the problem."""
    name = type(error).__name__.removesuffix("Error") or "error"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _status(error: DeepSpeakerError) -> int:
    if isinstance(error, AudioLimitError):
        return 413
    if isinstance(error, UnknownSpeakerError):
        return 404
    if isinstance(error, SpeakerExistsError):
        return 409
    if isinstance(error, AudioError):
        return 422
    return 400


class UploadLimit:
    """ASGI middleware: a request body larger than `max_bytes` gets 413, by its Content-Length before it is read,
    or while it streams in when it declares none."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise ServiceError(413, "upload_too_large", self._message())
            return message

        await self.app(scope, counted, send)

    def _message(self) -> str:
        return f"upload larger than the limit of {self.max_bytes:,} bytes"

    async def _refuse(self, scope, receive, send):
        await error_response(413, "upload_too_large", self._message())(scope, receive, send)


class Uploads(list):
    """Paths of a request's uploads (private temporary files) that know the names the client gave them."""

    names: dict[str, str]

    def public(self, text: str) -> str:
        """`text` with every temporary path replaced by the uploaded file's name."""
        for temporary, original in self.names.items():
            text = text.replace(temporary, original)
        return text


class SpeakerService:
    """What the endpoints share: the encoder, the verifier, the store, the limits and the keys."""

    def __init__(
        self,
        encoder,
        store,
        api_keys=(),
        limits: ServiceLimits = ServiceLimits(),
        operating_point: str = "far1",
        scorer=None,
        spoof_gate=None,
        diarizer: Diarizer | None = None,
    ):
        self.encoder, self.diarizer = encoder, diarizer
        self.store = store if is_database_url(store) else Path(store)
        self.api_keys = tuple(k for k in api_keys if k)
        self.limits = limits
        self.verifiers = {point: Verifier(encoder, scorer, operating_point=point, spoof_gate=spoof_gate) for point in OPERATING_POINTS}
        self.default_operating_point = operating_point
        self._slots = threading.BoundedSemaphore(limits.max_concurrent)
        self._local = threading.local()
        with self._open_registry():  # create the store (and check it belongs to this model) at start-up
            pass

    def close(self) -> None:
        """At shutdown: fold the store's write-ahead log into the database file (a copy of the `.db` alone is then
        complete)."""
        with self._open_registry() as registry:
            registry.checkpoint()

    def _open_registry(self) -> Registry:
        return open_registry(self.store, self.encoder, concurrent=True)

    @property
    def registry(self) -> Registry:
        """This worker thread's own connection to the store."""
        if getattr(self._local, "registry", None) is None:
            self._local.registry = self._open_registry()
        return self._local.registry

    def verifier(self, operating_point: str | None) -> Verifier:
        point = operating_point or self.default_operating_point
        if point not in self.verifiers:
            raise ServiceError(400, "bad_operating_point", f"unknown operating point {point!r}; choose from {', '.join(OPERATING_POINTS)}")
        return self.verifiers[point]

    def check_key(self, key: str | None) -> None:
        if not self.api_keys:
            raise ServiceError(403, "writing_disabled", "this service was started without API keys: enrolling and removing are disabled")
        if key is None or not any(hmac.compare_digest(key.encode(), k.encode()) for k in self.api_keys):
            raise ServiceError(401, "bad_api_key", f"enrolling and removing need a valid API key in the {API_KEY_HEADER} header")

    @contextmanager
    def model_slot(self):
        """At most `max_concurrent` requests in the model; the rest wait, then get 503."""
        if not self._slots.acquire(timeout=self.limits.queue_seconds):
            raise ServiceError(
                503, "busy", f"all {self.limits.max_concurrent} model slots stayed busy for {self.limits.queue_seconds:g} s; try again"
            )
        try:
            yield
        finally:
            self._slots.release()

    def diarizer_for(self, **options) -> Diarizer:
        """The service's diarizer with the request's options (those not None) in its configuration."""
        if self.diarizer is None:
            raise ServiceError(501, "diarization_disabled", "this service was started without a diarizer")
        config = replace(self.diarizer.config, **{name: value for name, value in options.items() if value is not None})
        return Diarizer(self.diarizer.encoder, config, self.diarizer.overlap_detector)

    @contextmanager
    def recordings(self, uploads: list[UploadFile], diarize: bool = False):
        """The uploads as private temporary files (libsndfile reads files; nothing is kept), each checked for its
        duration (the limit for a recording, or for one to diarize) from its header before any decoding; errors
        name the uploaded file, not the temporary one."""
        limit = (self.limits.max_diarize_seconds, " to diarize") if diarize else (self.limits.max_seconds, "")
        with tempfile.TemporaryDirectory(prefix="deep_speaker_upload_") as folder:
            paths, names = [], {}
            for index, upload in enumerate(uploads):
                name = Path(upload.filename or f"upload{index}").name or f"upload{index}"
                path = Path(folder) / f"{index}_{re.sub(r'[^A-Za-z0-9._-]', '_', name)}"
                path.write_bytes(upload.file.read())
                names[str(path)] = name
                self._check_duration(path, name, *limit)
                paths.append(path)
            uploads = Uploads(str(p) for p in paths)
            uploads.names = names
            try:
                yield uploads
            except DeepSpeakerError as error:
                raise type(error)(uploads.public(str(error))) from None

    def _check_duration(self, path: Path, name: str, max_seconds: float, purpose: str) -> None:
        try:
            info = sf.info(str(path))
        except (sf.LibsndfileError, RuntimeError):
            return  # the decoder reports what is wrong with it, naming the file
        seconds = info.frames / max(info.samplerate, 1)
        if seconds > max_seconds:
            raise ServiceError(
                413,
                "audio_too_long",
                f"{name}: {seconds:.1f} s of audio; this service takes at most {max_seconds:g} s per recording{purpose}",
            )


def create_app(service: SpeakerService) -> FastAPI:
    """The service's application: errors as JSON, the page, recognition and the enrolment store, behind the upload limit."""

    @asynccontextmanager
    async def lifespan(app):
        yield
        service.close()

    app = FastAPI(
        lifespan=lifespan,
        title="deep-speaker",
        version="1",
        description="Speaker verification, identification and enrolment. Audio: WAV, FLAC, OGG/Opus or MP3 uploads.",
        docs_url=None,  # served below from local files: the page works offline
        redoc_url=None,
    )
    _add_api_docs(app)
    _add_error_handlers(app, service)
    _add_recognition_routes(app, service)
    _add_store_routes(app, service)
    return UploadLimit(app, service.limits.max_upload_bytes)


def _add_api_docs(app: FastAPI) -> None:
    """/docs: Swagger UI from the swagger-ui-bundle package's files, not a CDN (nothing loads from the internet)."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount(DOCS_ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs():
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title="deep-speaker API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
        )


def _add_error_handlers(app: FastAPI, service: SpeakerService) -> None:
    """Every failure as one JSON error with a status and a code; a bug says no more than that."""

    @app.exception_handler(ServiceError)
    async def on_service_error(request: Request, error: ServiceError):
        return error_response(error.status, error.code, error.message)

    @app.exception_handler(DeepSpeakerError)
    async def on_library_error(request: Request, error: DeepSpeakerError):
        return error_response(_status(error), _code(error), str(error).replace(store_name(service.store), "the speaker store"))

    @app.exception_handler(RequestValidationError)
    async def on_invalid_request(request: Request, error: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}" for e in error.errors())
        return error_response(422, "invalid_request", problems)

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, error: HTTPException):
        if isinstance(error.__cause__, ServiceError):  # raised while FastAPI read the body (an upload over the limit)
            return await on_service_error(request, error.__cause__)
        return error_response(error.status_code, "http_error", str(error.detail))

    @app.exception_handler(Exception)
    async def on_bug(request: Request, error: Exception):
        return error_response(500, "internal_error", "internal error (the service log has the details)")


def _add_recognition_routes(app: FastAPI, service: SpeakerService) -> None:
    """The page, health, and what the models answer: embed, verify, identify, diarize."""

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(PAGE, media_type="text/html")

    @app.get("/health", summary="Is the service up, and with which model?")
    def health():
        return {
            "status": "ok",
            "model": service.encoder.fingerprint,
            "embedding_dim": service.encoder.embedding_dim,
            "speakers": len(service.registry.names()),
            "writing_enabled": bool(service.api_keys),
            "diarization_enabled": service.diarizer is not None,
            "limits": asdict(service.limits),
        }

    @app.post("/embed", summary="L2-normalised speaker embedding of one recording")
    def embed(audio: UploadFile = File(...)):
        with service.recordings([audio]) as (path,), service.model_slot():
            embedding = service.encoder.embed(path)
        return {"model": service.encoder.fingerprint, "embedding_dim": int(embedding.size), "embedding": embedding.tolist()}

    @app.post("/verify", summary="Same speaker? Two recordings, or one and an enrolled name")
    def verify(
        audio: UploadFile = File(...),
        audio_b: UploadFile | None = File(None),
        speaker: str | None = Form(None),
        operating_point: str | None = Form(None),
    ):
        if (audio_b is None) == (speaker is None):
            raise ServiceError(
                422, "invalid_request", "verify takes two recordings (audio, audio_b) or one and an enrolled name (audio, speaker)"
            )
        verifier = service.verifier(operating_point)
        uploads = [audio] if audio_b is None else [audio, audio_b]
        with service.recordings(uploads) as paths, service.model_slot():
            decision = verifier.verify_enrolled(paths[0], speaker, service.registry) if speaker is not None else verifier.verify(*paths)
            decision = replace(decision, reason=paths.public(decision.reason))
        return decision.as_json(verifier.operating_point)

    @app.post("/identify", summary="Who of the enrolled speakers is this? 'unknown' below the threshold")
    def identify(audio: UploadFile = File(...), top_k: int = Form(5), operating_point: str | None = Form(None)):
        verifier = service.verifier(operating_point)
        with service.recordings([audio]) as paths, service.model_slot():
            result = verifier.identify(paths[0], service.registry, top_k)
            return replace(result, reason=paths.public(result.reason)).as_json()

    @app.post("/diarize", summary="Who spoke when: the speaker turns of one recording, as JSON and as RTTM")
    def diarize(
        audio: UploadFile = File(...),
        num_speakers: int | None = Form(None),
        min_speakers: int | None = Form(None),
        max_speakers: int | None = Form(None),
        exclusive: bool | None = Form(None),
    ):
        diarizer = service.diarizer_for(
            num_speakers=num_speakers, min_speakers=min_speakers, max_speakers=max_speakers, exclusive=exclusive
        )
        with service.recordings([audio], diarize=True) as paths, service.model_slot():
            name = paths.names[paths[0]]
            segments = diarizer.diarize(paths[0])
            if not segments:
                raise NoSpeechError(f"{paths[0]}: no speech found to diarize")
        recording = Path(name).stem or "recording"
        segments = [replace(segment, recording=recording) for segment in segments]
        return {
            "recording": recording,
            "speakers": sorted({s.speaker for s in segments}),
            "turns": [{"start": round(s.start, 3), "end": round(s.end, 3), "speaker": s.speaker} for s in segments],
            "exclusive": diarizer.config.exclusive,
            "rttm": rttm_text(segments),
        }


def _add_store_routes(app: FastAPI, service: SpeakerService) -> None:
    """The enrolment store: list, enrol and remove (the last two with an API key)."""

    @app.get("/speakers", summary="Enrolled speakers")
    def speakers():
        return {"speakers": [{"name": name, "files": files} for name, files in service.registry.names()]}

    @app.post("/speakers", status_code=201, summary="Enrol a speaker from one or more recordings (needs an API key)")
    def enrol(
        name: str = Form(...),
        audio: list[UploadFile] = File(...),
        replace: bool = Form(False),
        x_api_key: str | None = Security(API_KEY),
    ):
        service.check_key(x_api_key)
        if len(audio) > service.limits.max_files:
            raise ServiceError(413, "too_many_files", f"{len(audio)} files; enrol from at most {service.limits.max_files}")
        with service.recordings(audio) as paths, service.model_slot():
            service.registry.enroll(name, paths, replace=replace)
        return {"name": name, "files": len(paths)}

    @app.delete("/speakers/{name}", summary="Remove an enrolled speaker (needs an API key)")
    def remove(name: str, x_api_key: str | None = Security(API_KEY)):
        service.check_key(x_api_key)
        service.registry.remove(name)
        return {"removed": name}
