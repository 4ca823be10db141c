"""The package's floors hold: no module imports one on a higher floor (not even inside a function), no import circle."""

import ast

from tests.helpers import ROOT

PACKAGE = ROOT / "deep_speaker"
FLOORS = {  # top-level module or package -> floor (docs/layout.md draws them)
    **dict.fromkeys(["errors", "optional", "fileio", "model_home"], 0),
    **dict.fromkeys(
        [
            "audio",
            "frontends",
            "features",
            "scoring",
            "verification",
            "enrol",
            "postgres_store",
            "speaker_index",
            "checkpoints",
            "exported",
            "vad",
            "download",
            "data",
        ],
        1,
    ),
    "evaluation": 1,
    **dict.fromkeys(["layers", "losses", "models", "importers", "model_files", "embedding", "score_fusion", "config"], 2),
    **dict.fromkeys(["tf", "diarization", "adversarial"], 3),
    **dict.fromkeys(["assembly", "cluster"], 4),
    **dict.fromkeys(["cli", "service"], 5),
}


def _module(path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """{module: the package modules it imports anywhere in its body}, names relative to the package."""
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, *([node.module] if node.module else [])])
                found |= {c for c in (target, *(f"{target}.{a.name}".lstrip(".") for a in node.names)) if c in modules}
            elif isinstance(node, ast.ImportFrom | ast.Import):
                names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                found |= {n.removeprefix("deep_speaker.") for n in names if n and n.startswith("deep_speaker.")}
        edges[name] = found - {name, ""}
    return edges


def test_no_module_imports_a_higher_floor():
    upward = []
    for source, targets in _imports().items():
        if not source:
            continue  # the package face maps names lazily to every floor
        floor = FLOORS[source.split(".")[0]]
        upward += [f"{source} -> {target}" for target in targets if target and FLOORS[target.split(".")[0]] > floor]
    assert not upward, upward


def test_there_is_no_import_circle():
    edges = _imports()
    state, circles = {}, []

    def visit(node, path):
        state[node] = "open"
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                circles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not circles, circles
