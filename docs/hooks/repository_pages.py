"""MkDocs hook: the repository's own Markdown pages that live outside docs/ (the README as the front page, the
model card, the LibriSpeech recipe) join the site as they are, with their links to one another rewritten, so each
text is written once."""

import re
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]
PAGES = {  # repository path -> page of the site
    "README.md": "index.md",
    "deep_speaker/pretrained/README.md": "model-card.md",
    "recipes/librispeech/README.md": "librispeech-recipe.md",
}


def _site_links(text: str, source: str) -> str:
    """Links of the page at repository path `source` as the site has them."""
    base = Path(source).parent

    def rewrite(match):
        target = match.group(2)
        if re.match(r"[a-z]+:|#", target):
            return match.group(0)
        path, _, anchor = target.partition("#")
        resolved = (base / path).as_posix() if not path.startswith("../") else Path(base, path).resolve().relative_to(ROOT).as_posix()
        resolved = Path(resolved).as_posix()
        page = PAGES.get(resolved) or (resolved[len("docs/") :] if resolved.startswith("docs/") else None)
        return match.group(0) if page is None else f"{match.group(1)}({page}{'#' + anchor if anchor else ''})"

    return re.sub(r"(\]\s*)\(([^)\s]+)\)", rewrite, text)


def on_files(files, config):
    for source, page in PAGES.items():
        files.append(File.generated(config, page, content=_site_links((ROOT / source).read_text(), source)))
    return files


def on_page_markdown(markdown, page, config, files):
    """docs/ pages link to the repository pages by their repository paths (so they work on GitHub too)."""
    return _site_links(markdown, f"docs/{page.file.src_uri}") if not page.file.generated_by else markdown
