"""Everyday commands: embed (one process, or a corpus on Ray), verify, enrol, list, remove, identify."""

from __future__ import annotations

import json
from pathlib import Path

from ..enrol import store_name
from ..errors import DeepSpeakerError
from .common import (
    add_cluster_arguments,
    add_decision_arguments,
    add_encoder_arguments,
    add_quiet_argument,
    add_store_arguments,
    checkpoint_path,
    cluster_options,
    open_encoder,
    open_store,
    open_verifier,
    require_inputs,
    whole_number,
)


def cmd_embed(args) -> int:
    from ..data.corpus import named_recordings
    from ..fileio import atomic_save_npy, atomic_write_bytes

    out = Path(args.out)
    if out.is_dir() or out.suffix != ".npy":
        raise DeepSpeakerError(f"{out}: --out names the .npy file to write (not a folder)")
    recordings = named_recordings(args.files)
    require_inputs([path for _, path in recordings])
    embeddings = open_encoder(args).embed_many([path for _, path in recordings], progress=len(recordings) > 1 and not args.quiet)
    names = out.with_name(f"{out.stem}.names.txt")
    atomic_save_npy(out, embeddings)
    atomic_write_bytes(names, "".join(f"{name}\n" for name, _ in recordings).encode())
    print(f"wrote {out}: {embeddings.shape[0]} embeddings of dimension {embeddings.shape[1]}, one per line of {names}")
    return 0


def cmd_embed_corpus(args) -> int:
    from ..cluster import embed_corpus, finished_utterances

    options = {**cluster_options(args), "batch_size": args.batch_size}
    manifest = embed_corpus(args.sources, args.out_dir, checkpoint_path(args), args.runtime, **options)
    print(f"{len(finished_utterances(args.out_dir))} utterances embedded in {args.out_dir} ({manifest})")
    return 0


def cmd_verify(args) -> int:
    if (args.audio_b is None) == (args.speaker is None):
        raise DeepSpeakerError("verify takes two recordings (verify A B) or one and an enrolled name (verify A --speaker NAME)")
    if args.speaker is not None:
        from ..enrol import require_store

        require_store(args.store)  # before the model
    require_inputs([args.audio_a] + ([args.audio_b] if args.audio_b is not None else []))
    verifier = open_verifier(args)
    if args.speaker is not None:
        with open_store(args, verifier.encoder) as registry:
            decision = verifier.verify_enrolled(args.audio_a, args.speaker, registry)
    else:
        decision = verifier.verify(args.audio_a, args.audio_b)
    print(json.dumps(decision.as_json(verifier.operating_point)) if args.json else decision)
    return 0


def cmd_enroll(args) -> int:
    require_inputs(args.files)
    with open_store(args, create=True) as registry:
        registry.enroll(args.name, args.files, replace=args.replace)
        model, store = registry.encoder.fingerprint, str(registry.path)  # a database URL without its password
    if args.json:
        print(json.dumps({"enrolled": args.name, "files": [str(f) for f in args.files], "store": store, "model": model}))
    else:
        print(f"enrolled {args.name!r} from {len(args.files)} file(s) in {store}")
    return 0


def _store_alone(args):
    """The store for listing and removing names: checked against the model when one is named (`--checkpoint-file`),
    else opened as it is, with no model loaded (a second, not TensorFlow's start-up)."""
    from ..assembly import open_registry

    return open_registry(args.store, open_encoder(args) if args.checkpoint_file else None, create=False)


def cmd_list(args) -> int:
    with _store_alone(args) as registry:
        names = registry.names()
    for name, files in names:
        print(f"{name}\t{files} file(s)")
    if not names:
        print(f"{store_name(args.store)}: no speaker enrolled")
    return 0


def cmd_remove(args) -> int:
    with _store_alone(args) as registry:
        registry.remove(args.name)
    print(f"removed {args.name!r} from {store_name(args.store)}")
    return 0


def cmd_identify(args) -> int:
    from ..enrol import require_store
    from ..verification import check_top_k

    check_top_k(args.top_k)  # the options and the store before the model
    require_store(args.store)
    require_inputs([args.audio])
    verifier = open_verifier(args)
    with open_store(args, verifier.encoder) as registry:
        result = verifier.identify(args.audio, registry, args.top_k)
    print(json.dumps(result.as_json()) if args.json else result)
    return 0


def register(commands) -> None:
    _embed_parser(commands)
    _embed_corpus_parser(commands)
    _verify_parser(commands)
    _enroll_parser(commands)
    _list_parser(commands)
    _remove_parser(commands)
    _identify_parser(commands)


def _embed_parser(commands) -> None:
    embed = commands.add_parser("embed", help="embed recordings into an .npy (n, dim), their names in NAME.names.txt")
    embed.add_argument("files", nargs="+", help="audio files, folders (every recording below), wav.scp or .txt / .lst lists of paths")
    embed.add_argument("--out", required=True)
    add_encoder_arguments(embed)
    add_quiet_argument(embed)
    embed.set_defaults(handler=cmd_embed)


def _embed_corpus_parser(commands) -> None:
    corpus = commands.add_parser(
        "embed-corpus", help="embed a corpus on Ray (this machine, or a cluster with --address) into Parquet parts; resumable"
    )
    add_cluster_arguments(corpus, "embedding", 256)
    corpus.add_argument("--batch-size", type=whole_number(1, 4096), default=16, help="recordings per actor call")
    add_encoder_arguments(corpus)
    add_quiet_argument(corpus)
    corpus.set_defaults(handler=cmd_embed_corpus)


def _verify_parser(commands) -> None:
    verify = commands.add_parser("verify", help="same speaker? two recordings, or a recording and an enrolled name")
    verify.add_argument("audio_a")
    verify.add_argument("audio_b", nargs="?")
    verify.add_argument("--speaker", help="compare audio_a with this enrolled speaker")
    add_decision_arguments(verify)
    verify.add_argument("--json", action="store_true", help="one JSON object on standard output instead of text")
    verify.set_defaults(handler=cmd_verify)


def _enroll_parser(commands) -> None:
    enroll = commands.add_parser("enroll", help="enrol a speaker from one or more recordings (embeddings averaged)")
    enroll.add_argument("name")
    enroll.add_argument("files", nargs="+")
    enroll.add_argument("--replace", action="store_true", help="overwrite an existing speaker of that name")
    add_store_arguments(enroll)
    enroll.add_argument("--json", action="store_true", help="one JSON object on standard output instead of text")
    enroll.set_defaults(handler=cmd_enroll)


def _list_parser(commands) -> None:
    listing = commands.add_parser("list", help="enrolled speakers")
    add_store_arguments(listing)
    listing.set_defaults(handler=cmd_list)


def _remove_parser(commands) -> None:
    remove = commands.add_parser("remove", help="delete an enrolled speaker")
    remove.add_argument("name")
    add_store_arguments(remove)
    remove.set_defaults(handler=cmd_remove)


def _identify_parser(commands) -> None:
    identify = commands.add_parser("identify", help="who is speaking? ranked enrolled speakers, 'unknown' below the threshold")
    identify.add_argument("audio")
    identify.add_argument("--top-k", dest="top_k", type=int, default=5)
    add_decision_arguments(identify)
    identify.add_argument("--json", action="store_true", help="one JSON object on standard output instead of text")
    identify.set_defaults(handler=cmd_identify)
