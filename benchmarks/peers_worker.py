"""The peers' side of `benchmarks/speed.py`, run by the Python of an environment with PyTorch, Resemblyzer and
SpeechBrain (never imported by the toolkit): it loads the peers' own models and times their own pipelines, file path
to embedding, one round at a time as `speed.py` asks over stdin/stdout (one JSON object a line).

    {"op": "load", "threads": 2, "resemblyzer": "pretrained.pt", "speechbrain": "ckpt", "speechbrain_config": "cfg.json"}
    {"op": "round", "model": "resemblyzer" | "speechbrain", "files": [...]}  ->  {"seconds": s, "embeddings": [[...]]}
"""

import json
import sys
import time
from pathlib import Path


def load(request: dict) -> dict:
    import soundfile as sf
    import torch
    from resemblyzer import VoiceEncoder, preprocess_wav
    from speechbrain.lobes.features import Fbank
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    torch.set_num_threads(request["threads"])
    torch.set_num_interop_threads(1)
    encoder = VoiceEncoder("cpu", verbose=False, weights_fpath=Path(request["resemblyzer"]))
    config = json.loads(Path(request["speechbrain_config"]).read_text())
    ecapa = ECAPA_TDNN(**config["kwargs"]).eval()
    ecapa.load_state_dict(torch.load(request["speechbrain"], map_location="cpu", weights_only=True))
    fbank = Fbank(n_mels=config["features"]["n_mels"])

    def resemblyzer(path):
        return encoder.embed_utterance(preprocess_wav(path))

    @torch.inference_mode()
    def speechbrain(path):
        waveform, _ = sf.read(path, dtype="float32")
        features = fbank(torch.from_numpy(waveform)[None])
        features = features - features.mean(dim=1, keepdim=True)  # InputNormalization(norm_type="sentence", std_norm=False)
        embedding = ecapa(features)[0, 0]
        return (embedding / embedding.norm()).numpy()

    return {"resemblyzer": resemblyzer, "speechbrain": speechbrain, "torch": torch.__version__, "threads": torch.get_num_threads()}


def main() -> None:
    models = None
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "load":
            models = load(request)
            reply = {"torch": models["torch"], "threads": models["threads"]}
        else:
            run = models[request["model"]]
            started = time.perf_counter()
            embeddings = [run(path) for path in request["files"]]
            reply = {"seconds": time.perf_counter() - started, "embeddings": [e.tolist() for e in embeddings]}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
