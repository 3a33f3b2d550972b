"""Execute chapters of the book in place under a profile, and clean their outputs.

    python tools/execute_chapters.py                       # every chapter of _toc.yml, book profile
    python tools/execute_chapters.py book/01_elbo.ipynb --profile quick

Each notebook runs in a fresh kernel from its own folder with INFOVAE_PROFILE set. A failing
cell stops the run with the error and leaves the committed notebook untouched. Outputs are
cleaned before writing: machine paths (the repository, the home folder, the Python
prefix, temporary folders) are replaced by neutral names, and per-cell execution
timestamps are dropped so that re-running changes only what really changed. Progress bars
(tqdm's widgets) are dropped with their widget state: a finished bar tells a reader nothing
and would leave blank space in the HTML; other widgets (chapter 10's explorer) keep theirs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import yaml
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]


def toc_notebooks(root: Path = ROOT) -> list[Path]:
    """The .ipynb chapters of _toc.yml, in reading order."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    walk(toc.get("parts"))
    walk(toc.get("chapters"))
    return [root / f"{f}.ipynb" for f in files if (root / f"{f}.ipynb").exists()]


def _path_patterns() -> list[tuple[re.Pattern, str]]:
    """Machine-specific prefixes, longest first, and what replaces them."""
    pairs = {
        str(ROOT): ".",
        sys.prefix: "<python>",
        sys.base_prefix: "<python>",
        str(Path.home()): "~",
        tempfile.gettempdir(): "<tmp>",
    }
    ordered = sorted(pairs.items(), key=lambda kv: -len(kv[0]))
    return [(re.compile(re.escape(k) + r"(?=[/\\'\"\s:]|$)"), v) for k, v in ordered if len(k) > 1]


def sanitize(nb: nbformat.NotebookNode) -> int:
    """Replace machine paths in text outputs and drop execution timestamps; returns #edits."""
    patterns = _path_patterns()
    edits = 0

    def clean(text: str) -> str:
        nonlocal edits
        for pattern, repl in patterns:
            text, n = pattern.subn(repl, text)
            edits += n
        return text

    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        for out in cell.get("outputs", []):
            if "text" in out:
                out["text"] = clean(out["text"])
            for key, value in out.get("data", {}).items():
                if isinstance(value, str) and (key.startswith("text/") or key.endswith("json")):
                    out["data"][key] = clean(value)
    return edits


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def _is_progress_bar(out: dict, state: dict) -> bool:
    """A widget output whose view is (a box around) a progress bar, as tqdm.auto draws it."""
    model = out.get("data", {}).get(WIDGET_VIEW, {}).get("model_id")
    if model is None:
        return False
    if re.search(r"\d+/\d+ \[|it/s\]|s/it\]", str(out.get("data", {}).get("text/plain", ""))):
        return True
    children = state.get(model, {}).get("state", {}).get("children", [])
    ids = [model] + [c.split("IPY_MODEL_")[-1] for c in children if isinstance(c, str)]
    return any(state.get(i, {}).get("model_name") in ("FloatProgressModel", "IntProgressModel") for i in ids)


def strip_progress_bars(nb: nbformat.NotebookNode) -> int:
    """Drop progress-bar widget outputs and every widget model no remaining output uses; returns #outputs dropped."""
    widgets = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {})
    state = widgets.get("state", {})
    dropped = 0
    for cell in nb.cells:
        outputs = cell.get("outputs", [])
        kept = [o for o in outputs if not _is_progress_bar(o, state)]
        dropped += len(outputs) - len(kept)
        if "outputs" in cell:
            cell["outputs"] = kept
    used, todo = set(), [o["data"][WIDGET_VIEW]["model_id"] for c in nb.cells for o in c.get("outputs", [])
                         if WIDGET_VIEW in o.get("data", {})]
    while todo:  # every model reachable from a remaining view (children, layout, style, ...)
        model = todo.pop()
        if model in used or model not in state:
            continue
        used.add(model)
        todo += re.findall(r"IPY_MODEL_([0-9a-f]+)", json.dumps(state[model].get("state", {})))
    if used:
        widgets["state"] = {k: v for k, v in state.items() if k in used}
    else:
        nb.metadata.pop("widgets", None)
    return dropped


def execute(path: Path, profile: str) -> float:
    """Run one notebook in place; returns its wall time in seconds."""
    nb = nbformat.read(path, as_version=4)
    env_before = os.environ.get("INFOVAE_PROFILE")
    os.environ["INFOVAE_PROFILE"] = profile
    start = time.perf_counter()
    try:
        client = NotebookClient(
            nb, timeout=None, kernel_name="python3", allow_errors=False,
            resources={"metadata": {"path": str(path.parent)}}, store_widget_state=True,
        )
        client.execute()
    finally:
        if env_before is None:
            os.environ.pop("INFOVAE_PROFILE", None)
        else:
            os.environ["INFOVAE_PROFILE"] = env_before
    wall = time.perf_counter() - start
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    if errors:
        raise RuntimeError(f"{path}: {len(errors)} error output(s)")
    strip_progress_bars(nb)
    sanitize(nb)
    nbformat.write(nb, path)
    return wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="chapters to run (default: every chapter of _toc.yml)")
    parser.add_argument("--strip-only", action="store_true", help="only drop progress bars and clean paths (no execution)")
    parser.add_argument("--profile", default="book", choices=["quick", "book", "paper"], help="INFOVAE_PROFILE for the run")
    args = parser.parse_args(argv)
    notebooks = [p.resolve() for p in args.notebooks] or toc_notebooks()
    total = 0.0
    if args.strip_only:
        for path in notebooks:
            nb = nbformat.read(path, as_version=4)
            dropped = strip_progress_bars(nb)
            sanitize(nb)
            nbformat.write(nb, path)
            print(f"{path.relative_to(ROOT)}: {dropped} progress bar(s) dropped")
        return 0
    for path in notebooks:
        print(f"executing {path.relative_to(ROOT)} (profile {args.profile}) ...", flush=True)
        try:
            wall = execute(path, args.profile)
        except CellExecutionError as err:
            print(f"FAILED: {path.relative_to(ROOT)}\n{err}", file=sys.stderr)
            return 1
        total += wall
        print(f"  done in {wall:.1f} s", flush=True)
    print(f"{len(notebooks)} chapter(s) in {total:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
