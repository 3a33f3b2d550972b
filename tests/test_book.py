"""The book: committed chapters are clean, it builds with warnings as errors, and a real
browser shows typeset math and loaded figures (MathJax and widget scripts served locally),
and what a reader sees at 1280 px: real tables, equations that fit their column, every
reference word once, no echoed bare values, figures at 60% or more of their natural width."""

import functools
import http.server
import json
import re
import shutil
import threading
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / ".web"  # npm packages unpacked by `make browser-tools`
# CDN address prefix -> local path served by the test server
CDN_TO_LOCAL = {
    "https://cdn.jsdelivr.net/npm/mathjax@3/": "/_web/mathjax/",
    "https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.4/require.min.js": "/_web/requirejs/require.js",
    "https://cdn.jsdelivr.net/npm/@jupyter-widgets/html-manager@1.0.6/": "/_web/html-manager/",
}


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [c["file"] for c in part["chapters"]]
    return files


def chapters() -> list[Path]:
    return [ROOT / f"{f}.ipynb" for f in toc_files() if (ROOT / f"{f}.ipynb").exists()]


def test_every_toc_entry_exists_and_every_chapter_is_in_the_toc():
    for f in toc_files():
        assert (ROOT / f"{f}.ipynb").exists() or (ROOT / f"{f}.md").exists(), f
    listed = {ROOT / f"{f}.ipynb" for f in toc_files()}
    assert set((ROOT / "book").glob("*.ipynb")) <= listed


@pytest.mark.parametrize("path", chapters(), ids=lambda p: p.stem)
def test_committed_chapter_is_executed_clean_and_follows_the_pattern(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    assert all(c.execution_count is not None for c in code), "every code cell has stored outputs"
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), "executed top to bottom in one fresh kernel"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"], "no error output"
    text = json.dumps(outputs)
    assert not re.search(r"(/work/|/root/|/home/|/tmp/|site-packages)", text), "no machine paths"
    assert 'if "google.colab" in sys.modules:' in code[0].source, "first code cell: the Colab set-up"
    assert "iv.book.Chapter.start()" in code[1].source, "second code cell starts the provenance record"
    assert "chapter.finish()" in code[-1].source, "the last code cell prints the provenance"
    record = "".join(o.get("text", "") for o in code[-1].outputs)
    assert "profile" in record and "book" in record, "committed outputs come from the book profile"


def test_the_book_builds_without_warnings(built_book):
    assert (built_book / "index.html").exists()
    for f in toc_files():
        assert (built_book / f"{f}.html").exists(), f
    for path in chapters():
        prose = "".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
        roles = len(re.findall(r"\{glue(:text)?\}`", prose))
        if roles:  # every glued number reached the page
            html = (built_book / f"{path.relative_to(ROOT).with_suffix('')}.html").read_text()
            assert html.count('class="pasted-') >= roles, path.stem


def _drop_integrity(html: str, cdn: str) -> str:
    """Remove the integrity attribute of every tag that loads ``cdn``, wherever it stands in the tag."""
    def clean(tag: re.Match) -> str:
        return re.sub(r'\s+integrity="[^"]*"', "", tag.group(0)) if cdn in tag.group(0) else tag.group(0)
    return re.sub(r"<(script|link)\b[^>]*>", clean, html)


def test_results_table_is_a_pipe_table_with_escaped_cells():
    from infovae.book import table

    text = table({"ELBO": {"NLL, q(z|x)": 102.4049, "n": 3}, "MMD|VAE": {"NLL, q(z|x)": None}},
                 fmt={"NLL, q(z|x)": "{:.2f}"}, index="model").data.splitlines()
    assert text == ["| model | NLL, q(z\\|x) | n |", "| --- | --- | --- |",
                    "| ELBO | 102.40 | 3 |", "| MMD\\|VAE | - | - |"]
    # every row has as many cells as the header (a raw "|" inside a cell would add one)
    assert len({len(re.findall(r"(?<!\\)\|", line)) for line in text}) == 1


def test_integrity_is_dropped_before_or_after_src():
    cdn = "https://cdn.example/x.js"
    for tag in (f'<script integrity="sha256-a" src="{cdn}"></script>', f'<script src="{cdn}" integrity="sha256-a"></script>'):
        assert "integrity" not in _drop_integrity(tag, cdn)
    assert "integrity" in _drop_integrity('<script integrity="sha256-a" src="other.js"></script>', cdn)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the built book, with CDN script addresses rewritten to local npm copies."""

    def __init__(self, *args, html_root: Path, **kwargs):
        self.html_root = html_root
        super().__init__(*args, directory=str(html_root), **kwargs)

    def translate_path(self, path):
        if path.startswith("/_web/"):
            return str(WEB / path[len("/_web/"):].split("?")[0])
        return super().translate_path(path)

    def do_GET(self):
        local = Path(self.translate_path(self.path))
        if local.suffix == ".html" and local.is_file():
            html = local.read_text()
            for cdn, mine in CDN_TO_LOCAL.items():
                # a local copy is not byte-identical to the CDN's file: drop its integrity hash
                html = _drop_integrity(html, cdn).replace(cdn, mine)
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser(built_book):
    if not (shutil.which("chromium") and shutil.which("chromedriver") and (WEB / "mathjax").is_dir()):
        pytest.fail("headless Chromium, ChromeDriver or the local MathJax are missing: run `make browser-tools`")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, html_root=built_book))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 "--window-size=1280,1600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_script_timeout(60)
    driver.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    yield driver
    driver.quit()
    server.shutdown()


@pytest.mark.browser
@pytest.mark.parametrize("page", toc_files())
def test_page_renders_typeset_math_and_loaded_figures(browser, built_book, page):
    source = (built_book / f"{page}.html").read_text()
    browser.get(f"{browser.base_url}/{page}.html")
    state = browser.execute_async_script(PAGE_STATE_JS)
    assert state["mathErr"] is None, state["mathErr"]
    has_math = "tex-mml-chtml" in source and ("\\(" in source or "\\[" in source)
    if has_math:
        assert state["math"] > 0, "MathJax typeset nothing"
    assert state["mathErrors"] == 0
    broken = [i["src"] for i in state["images"] if not i["ok"]]
    assert not broken, f"figures that did not load: {broken}"
    figures = [i for i in state["images"] if "_images/" in i["src"]]
    if "_images/" in source:
        assert figures, "the page's figures are missing"
    for raw in ("$$", "\\begin{", "\\frac{", "{glue:", "{eq}`", "{cite}`"):
        assert raw not in state["text"], f"raw markup {raw!r} visible on the page"
    # what a reader sees at 1280 px
    reader = state["reader"]
    assert not reader["rawTables"], f"tables shown as raw pipe text: {reader['rawTables']}"
    assert not reader["cutEquations"], f"display equations wider than the column: {reader['cutEquations']}"
    assert not reader["doubledWords"], f"reference words written twice: {reader['doubledWords']}"
    assert not reader["bareNumbers"], f"cells that echo a bare value: {reader['bareNumbers']}"
    assert not reader["shrunkFigures"], f"figures shown below 60% of their natural width (name, %): {reader['shrunkFigures']}"
    if "require.min.js" in source or "html-manager" in source:
        assert reader["widgetScripts"], "the page's widget scripts (require.js, the widget manager) did not load"
        assert reader["renderedViews"] >= reader["widgetViews"], "a widget output was not rendered"


# The page's state once MathJax has typeset it: math, figures, prose text, and the reader checks.
PAGE_STATE_JS = r"""
const done = arguments[arguments.length - 1];
const article = document.querySelector('article') || document.body;
const images = () => [...document.images].map(i => ({src: i.src, ok: i.complete && i.naturalWidth > 0}));
const proseText = () => {  // the page's text outside code blocks
    const copy = document.body.cloneNode(true);
    copy.querySelectorAll('pre, code, .highlight, .cell_output').forEach(e => e.remove());
    return copy.textContent;
};
const readerChecks = () => {
    const words = '(?:Eqs?\\.|Equations?|Propositions?|Lemmas?|Theorems?|Definitions?|Figs?\\.|Figures?|Tables?|Sections?|Chapters?)';
    const doubled = new RegExp('\\b' + words + '\\s+' + words + '\\s*\\(?\\d', 'g');
    const visible = article.cloneNode(true);
    visible.querySelectorAll('pre, code, .highlight').forEach(e => e.remove());
    const outputs = [...article.querySelectorAll('.cell_output > *')];  // outputs are not stripped
    const shown = o => (o.querySelector('pre') || o).textContent.trim();
    const scalar = /^[(\[]?\s*((np\.)?(float|int)\d*\(|tensor\(|array\()?[-+0-9.eE,\s()\[\]]*$|^(True|False|None)$/;
    return {
        rawTables: outputs.filter(o => /^\s*\|.*\|\s*$/m.test(o.textContent)
                                   && /\|\s*:?[-\u2013\u2014]+:?\s*\|/.test(o.textContent)).map(o => o.textContent.slice(0, 60)),
        cutEquations: [...article.querySelectorAll('mjx-container[display="true"]')].filter(c => {
            const box = c.closest('div.math') || c.parentElement;
            return c.scrollWidth > c.clientWidth + 1 || box.scrollWidth > box.clientWidth + 1;
        }).map(c => (c.closest('div.math') || c).id || c.textContent.slice(0, 40)),
        doubledWords: visible.textContent.match(doubled) || [],
        bareNumbers: [...article.querySelectorAll('.cell_output .output.text_plain')].map(shown)
                         .filter(t => t && scalar.test(t)),
        shrunkFigures: [...article.querySelectorAll('img')].filter(i => {
            const w = i.getBoundingClientRect().width;
            return i.naturalWidth > 0 && w > 0 && w < 0.6 * i.naturalWidth;
        }).map(i => [i.src.split('/').pop(), Math.round(100 * i.getBoundingClientRect().width / i.naturalWidth)]),
        widgetScripts: typeof window.require === 'function' && typeof window.require.defined === 'function',
        widgetViews: document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length,
        renderedViews: document.querySelectorAll('.widget-subarea, .jupyter-widgets.widget-container, .jupyter-widgets-view').length,
    };
};
const report = (mathErr) => done({
    math: document.querySelectorAll('mjx-container').length,
    mathErrors: document.querySelectorAll('mjx-merror').length,
    mathErr: mathErr, images: images(), text: proseText(), reader: readerChecks()});
const start = Date.now();
(function wait() {
    const allLoaded = [...document.images].every(i => i.complete);
    if (window.MathJax && MathJax.startup && MathJax.startup.promise && allLoaded) {
        MathJax.startup.promise.then(() => setTimeout(() => report(null), 300), e => report(String(e)));
    } else if (!document.querySelector('script[src*="tex-mml-chtml"]') && allLoaded) {
        report(null);
    } else if (Date.now() - start > 30000) { report('timeout waiting for MathJax'); }
    else { setTimeout(wait, 100); }
})();
"""


def _duration(seconds: float) -> str:
    """How the appendix writes a duration: minutes below 2 h, hours below 2 days, else days."""
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def test_appendix_times_are_those_of_the_committed_results():
    """Every time in the appendix's table is read off a committed result file (never stale)."""
    text = (ROOT / "book" / "appendix_reproduction.md").read_text()
    results = {name: json.loads((ROOT / "book" / "results" / f"{name}-book.json").read_text())
               for name in ("fig1", "fig2-5", "fig6", "table1", "information-preference")}
    paper = json.loads((ROOT / "book" / "results" / "paper-scale-cpu.json").read_text())["total_seconds"]
    fig25_training = sum(run["seconds"][1][0] for run in results["fig2-5"]["results"]["training"].values())
    fig6 = results["fig6"]["results"]
    fig6_training = sum(t for by_dim in fig6["training_seconds"].values() for t in by_dim.values())
    preference = results["information-preference"]
    preference_training = sum(run["train_seconds"] for run in preference["results"]["runs"])
    rows = {
        "Fig. 1": (_duration(results["fig1"]["seconds"]), "all of it"),
        "Figs. 2 to 5": (_duration(results["fig2-5"]["seconds"]), _duration(fig25_training)),
        "Fig. 6": (_duration(results["fig6"]["seconds"]), _duration(fig6_training)),
        "Table 1": (_duration(results["table1"]["seconds"]), "shared with Fig. 6"),
    }
    keys = {"Fig. 1": "fig1", "Figs. 2 to 5": "fig2-5", "Fig. 6": "fig6", "Table 1": "table1"}
    for label, (run, training) in rows.items():
        row = f"| {label} | {run} | {training} | {_duration(paper[keys[label]])} | not measured |"
        assert row in text, row
    row = (f"| Information preference (ch. 8) | {_duration(preference['seconds'])} | {_duration(preference_training)} "
           "| not estimated | not measured |")
    assert row in text, row
