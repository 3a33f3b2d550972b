"""The book: committed chapters are clean, it builds with warnings as errors, and a real
browser shows typeset math and loaded figures (MathJax and widget scripts served locally),
and what a reader sees on a desktop (1280 px) and on a phone (390 px, touch emulation): real
tables, display equations that fit their column or scroll inside it with a visible cue, tables
wider than the column only inside a scroll container with a cue, code within the column, every
figure a link to its full-size image, figures and tables numbered per chapter ("Figure 8.3") and
every table of a chapter captioned, every reference word once, no echoed bare values, figures at
60% or more of their natural width on the desktop, no script error, and sidebar buttons that open
the chapter list and the page contents."""

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
    """Every page of _toc.yml in reading order: the root, the chapters and their sections."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            files.append(entry["file"])
            walk(entry.get("sections"))

    for part in toc.get("parts", []):
        walk(part["chapters"])
    return files


def chapter_prefix(page: str) -> str | None:
    """What the figure and table numbers of a page start with: "8." for book/08_..., "P." for the
    preface, "A." for the appendix; None for pages without numbered figures (API, bibliography)."""
    match = re.search(r"(?:^|/)(\d+)_[^/]+$", page)
    if match:
        return f"{int(match.group(1))}."
    return {"book/preface": "P.", "book/appendix_reproduction": "A."}.get(page)


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


WIDTHS = {"desktop": 1280, "phone": 390}


@pytest.fixture(scope="module", params=list(WIDTHS), ids=lambda name: f"{WIDTHS[name]}px")
def browser(built_book, request):
    """Headless Chromium at 1280 px, or at 390 px with a phone's touch and viewport emulated."""
    if not (shutil.which("chromium") and shutil.which("chromedriver") and (WEB / "mathjax").is_dir()):
        pytest.fail("headless Chromium, ChromeDriver or the local MathJax are missing: run `make browser-tools`")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Handler, html_root=built_book))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    width = WIDTHS[request.param]
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 f"--window-size={width},1600"):
        options.add_argument(flag)
    if request.param == "phone":
        options.add_experimental_option(
            "mobileEmulation", {"deviceMetrics": {"width": width, "height": 844, "pixelRatio": 3, "touch": True}})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_script_timeout(60)
    driver.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    driver.width = width
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
    # what a reader sees, at this width
    reader = state["reader"]
    assert not reader["rawTables"], f"tables shown as raw pipe text: {reader['rawTables']}"
    assert not reader["cutEquations"], f"display equations cut by the column (wider, without a scroll cue): {reader['cutEquations']}"
    assert not reader["cutInlineMath"], f"inline math clipped at the column's edge: {reader['cutInlineMath']}"
    assert not reader["wideTables"], f"tables wider than the column outside a scroll container with a cue: {reader['wideTables']}"
    assert not reader["cutCode"], f"code or printed output cut at the column's edge: {reader['cutCode']}"
    assert not reader["pageOverflow"], f"the page is wider than the screen ({reader['pageOverflow']} px)"
    assert not reader["unlinkedFigures"], f"figures that do not open at full size on click: {reader['unlinkedFigures']}"
    assert not reader["doubledWords"], f"reference words written twice: {reader['doubledWords']}"
    assert not reader["bareNumbers"], f"cells that echo a bare value: {reader['bareNumbers']}"
    if browser.width >= 1000:
        assert not reader["shrunkFigures"], f"figures shown below 60% of their natural width (name, %): {reader['shrunkFigures']}"
    prefix = chapter_prefix(page)
    if prefix:  # figures and tables numbered per chapter, every table captioned
        wrong = [n for n in reader["numbers"] if not re.fullmatch(rf"(Figure|Table|Listing) {re.escape(prefix)}\d+", n)]
        assert not wrong, f"numbers that are not this chapter's ({prefix}N): {wrong}"
        assert not reader["uncaptionedTables"], f"tables without a numbered caption: {reader['uncaptionedTables']}"
    errors = [e["message"] for e in browser.get_log("browser") if "Uncaught" in e["message"]]
    assert not errors, f"script errors: {errors}"
    if "require.min.js" in source or "html-manager" in source:
        assert reader["widgetScripts"], "the page's widget scripts (require.js, the widget manager) did not load"
        assert reader["renderedViews"] >= reader["widgetViews"], "a widget output was not rendered"


@pytest.mark.browser
@pytest.mark.parametrize("page", ["book/01_elbo", "book/08_flexible_decoders", "book/api/finite"])
def test_sidebar_buttons_open_the_chapter_list_and_the_page_contents(browser, page):
    """On a phone the two buttons of the article header open the chapter list and the page's
    contents; on the desktop the first collapses the chapter list and brings it back."""
    from selenium.webdriver.common.by import By

    browser.get(f"{browser.base_url}/{page}.html")
    browser.execute_async_script(PAGE_STATE_JS)
    shown = lambda css: [b for b in browser.find_elements(By.CSS_SELECTOR, css) if b.is_displayed()]
    primary, secondary = shown(".primary-toggle"), shown(".secondary-toggle")
    assert primary, "no visible button for the chapter list"
    if browser.width >= 1000:
        sidebar = browser.find_element(By.ID, "pst-primary-sidebar")
        primary[0].click()
        assert "pst-sidebar-hidden" in sidebar.get_attribute("class"), "the button did not collapse the chapter list"
        primary[0].click()
        assert "pst-sidebar-hidden" not in sidebar.get_attribute("class"), "the button did not bring the chapter list back"
        return
    for buttons, dialog, what in ((primary, "pst-primary-sidebar-modal", "chapter list"),
                                  (secondary, "pst-secondary-sidebar-modal", "page contents")):
        assert buttons, f"no visible button for the {what}"
        buttons[0].click()
        links = browser.execute_script(
            "const d = document.getElementById(arguments[0]); if (!d || !d.open) return -1;"
            "return [...d.querySelectorAll('a')].filter(a => a.getBoundingClientRect().width > 0).length;", dialog)
        assert links != -1, f"the {what} button does nothing"
        assert links > 1, f"the {what} opened empty"
        browser.execute_script("document.getElementById(arguments[0]).close()", dialog)


@pytest.mark.browser
def test_search_results_show_math_as_text(browser):
    """Search summaries are page text from the HTML, where math is still LaTeX: shown as text."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{browser.base_url}/search.html?q=lambda")
    WebDriverWait(browser, 90).until(
        lambda d: any("finished" in p.text for p in d.find_elements(By.CSS_SELECTOR, "#search-results .search-summary")))
    # the summaries are fetched page by page after the list is shown: wait until they stop arriving
    counts = []

    def settled(driver) -> bool:
        counts.append(len(driver.find_elements(By.CSS_SELECTOR, "#search-results p.context")))
        return len(counts) >= 4 and counts[-1] > 0 and len(set(counts[-4:])) == 1

    WebDriverWait(browser, 60, poll_frequency=0.5).until(settled)
    summaries = [p.text for p in browser.find_elements(By.CSS_SELECTOR, "#search-results p.context")]
    raw = [t for t in summaries if re.search(r"\\[(\[]|\\(lambda|alpha|mathcal|frac)\b", t)]
    assert not raw, f"search summaries with raw LaTeX: {raw[:3]}"
    assert any("λ" in t for t in summaries), summaries[:3]


def test_every_page_declares_its_scripts_once(built_book):
    """sphinx-thebe registers its configuration twice; a second `const` is a script error."""
    doubled = [str(p.relative_to(built_book)) for p in built_book.rglob("*.html")
               if "_static" not in p.parts and p.read_text().count("const THEBE_JS_URL") > 1]
    assert not doubled, f"pages that declare THEBE_JS_URL twice: {doubled[:5]}"


def test_api_pages_print_equation_numbers_not_labels(built_book):
    """One page per module; equation labels named in docstrings are links with the book's numbers."""
    pages = sorted((built_book / "book" / "api").glob("*.html"))
    assert len(pages) >= 10
    text = "".join(p.read_text() for p in pages)
    assert not re.search(r"ch\d+-[a-z0-9-]+</span></code>", text), "a docstring's equation label printed raw"
    assert ":eq:" not in text
    assert re.search(r'<a class="reference internal" href="[^"]*#equation-ch\d+-', text), "no equation links"


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
    // the column: the article's content box
    const A = article.getBoundingClientRect(), pad = getComputedStyle(article);
    const colLeft = A.left + parseFloat(pad.paddingLeft), colRight = A.right - parseFloat(pad.paddingRight);
    const beyond = e => { const r = e.getBoundingClientRect(); return r.width > 0 && (r.right > colRight + 1 || r.left < colLeft - 1); };
    const scrolls = e => e.scrollWidth > e.clientWidth + 1;
    // a box wider than its content area is fine if it scrolls and shows the cue: a faded edge
    // (.reader-overflow) and the words "scroll sideways" right after it
    const cued = box => box.classList.contains('reader-overflow') && /auto|scroll/.test(getComputedStyle(box).overflowX)
        && !beyond(box) && !!box.nextElementSibling && box.nextElementSibling.classList.contains('reader-scroll-hint')
        && box.nextElementSibling.getBoundingClientRect().height > 0;
    const name = e => (e.closest('[id]') || e).id || e.textContent.trim().slice(0, 40);
    return {
        rawTables: outputs.filter(o => /^\s*\|.*\|\s*$/m.test(o.textContent)
                                   && /\|\s*:?[-\u2013\u2014]+:?\s*\|/.test(o.textContent)).map(o => o.textContent.slice(0, 60)),
        cutEquations: [...article.querySelectorAll('mjx-container[display="true"]')].filter(c => {
            const box = c.closest('div.math') || c.parentElement, eqno = box.querySelector('.eqno');
            return scrolls(box) || beyond(box) || (eqno && beyond(eqno)) || ((scrolls(c) || beyond(c)) && !cued(c));
        }).map(c => (c.closest('div.math') || c).id || c.textContent.slice(0, 40)),
        cutInlineMath: [...article.querySelectorAll('span.math')].filter(s => {
            const m = s.querySelector('mjx-container');
            return m && m.getBoundingClientRect().width > s.clientWidth + 1
                && !(s.classList.contains('reader-overflow') && /auto|scroll/.test(getComputedStyle(s).overflowX) && !beyond(s));
        }).map(s => s.textContent.trim().slice(0, 40)),
        wideTables: [...article.querySelectorAll('table')].filter(t => {
            const box = t.closest('.pst-scrollable-table-container');
            const wide = t.getBoundingClientRect().width > colRight - colLeft + 1 || beyond(t);
            return wide && !(box && cued(box));
        }).map(t => t.textContent.trim().slice(0, 60)),
        cutCode: [...article.querySelectorAll('pre')].filter(p => p.getBoundingClientRect().width > 0
            && (p.closest('.cell_input') ? scrolls(p) || beyond(p) : (scrolls(p) || beyond(p)) && !cued(p)))
            .map(p => p.textContent.trim().slice(0, 60)),
        pageOverflow: document.documentElement.scrollWidth > window.innerWidth + 1 ? document.documentElement.scrollWidth : 0,
        unlinkedFigures: [...article.querySelectorAll('img')].filter(i => {
            const a = i.closest('a[href]');
            return !a || a.href.split('/').pop().split('?')[0] !== i.src.split('/').pop().split('?')[0];
        }).map(i => i.src.split('/').pop()),
        numbers: [...article.querySelectorAll('figcaption .caption-number, caption .caption-number, .code-block-caption .caption-number')]
                     .map(e => e.textContent.trim()),
        uncaptionedTables: [...article.querySelectorAll('table')].filter(t => !t.querySelector('caption .caption-number'))
                     .map(t => t.textContent.trim().slice(0, 60)),
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
