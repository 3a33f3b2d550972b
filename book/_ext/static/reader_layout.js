/* The reader's book on every screen (book/_ext/reader_layout.py). */
(() => {
  "use strict";
  const ready = (fn) => (document.readyState !== "loading" ? fn() : document.addEventListener("DOMContentLoaded", fn));

  /* 1. Sidebar buttons. pydata-sphinx-theme 0.17 binds the phone dialogs (and sphinx-book-theme
     its desktop collapse) to the *first* .primary-toggle / .secondary-toggle of the page, a
     button of the theme's own header that this layout hides; the visible buttons of the
     article header then do nothing. A click on any other one is handed to the first. */
  const forwardToggles = () => {
    for (const selector of [".primary-toggle", ".secondary-toggle"]) {
      const [bound, ...others] = document.querySelectorAll(selector);
      if (!bound) continue;
      for (const button of others) {
        button.addEventListener("click", (event) => {
          event.preventDefault();
          event.stopImmediatePropagation();
          bound.click();
        }, true);
      }
    }
  };

  /* 2. Boxes wider than the column scroll inside it, with a faded edge where there is more. */
  const SCROLLERS = [
    "div.math mjx-container[display=\"true\"]",
    ".pst-scrollable-table-container",
    ".cell_output pre",
    ".cell_output .output",
    "div.highlight pre",
    ".reader-scroll",
  ].join(",");
  const updateEdges = (box) => {
    box.classList.toggle("reader-scrolled", box.scrollLeft > 1);
    box.classList.toggle("reader-at-end", box.scrollLeft + box.clientWidth >= box.scrollWidth - 1);
  };
  const markOverflow = () => {
    document.querySelectorAll("div.math").forEach((math) => {
      const eq = math.querySelector("mjx-container[display=\"true\"]");
      if (!eq) return;
      math.classList.remove("reader-wide-equation");
      // the equation does not fit beside its number: the number goes under it
      if (eq.scrollWidth > eq.clientWidth + 1) math.classList.add("reader-wide-equation");
    });
    // inline math wider than the line (the theme clips it): it scrolls, with the faded edge
    document.querySelectorAll("span.math").forEach((span) => {
      const math = span.querySelector("mjx-container");
      if (!math) return;
      const wide = math.getBoundingClientRect().width > span.clientWidth + 1;
      span.classList.toggle("reader-overflow", wide);
      if (wide && !span.dataset.readerEdges) {
        span.dataset.readerEdges = "1";
        span.addEventListener("scroll", () => updateEdges(span), {passive: true});
      }
      if (wide) updateEdges(span);
    });
    document.querySelectorAll(".pst-scrollable-table-container > table > caption").forEach((caption) => {
      // as wide as the visible part of the table, short of the faded edge
      caption.style.maxWidth = `calc(${caption.closest(".pst-scrollable-table-container").clientWidth}px - 2.5rem)`;
    });
    document.querySelectorAll(SCROLLERS).forEach((box) => {
      const wide = box.scrollWidth > box.clientWidth + 1;
      box.classList.toggle("reader-overflow", wide);
      let hint = box.nextElementSibling;
      const hasHint = hint && hint.classList.contains("reader-scroll-hint");
      if (wide && !hasHint) {
        hint = document.createElement("span");
        hint.className = "reader-scroll-hint";
        hint.setAttribute("aria-hidden", "true");
        hint.textContent = "scroll sideways for more \u2192";
        box.after(hint);
      } else if (!wide && hasHint) {
        hint.remove();
      }
      if (wide && !box.dataset.readerEdges) {
        box.dataset.readerEdges = "1";
        box.addEventListener("scroll", () => updateEdges(box), {passive: true});
      }
      if (wide) updateEdges(box);
    });
  };

  /* 3. Every figure opens at full size: the image becomes a link to its file. */
  const linkFigures = () => {
    document.querySelectorAll("article img").forEach((img) => {
      if (img.closest("a") || !img.getAttribute("src")) return;
      const link = document.createElement("a");
      link.href = img.getAttribute("src");
      link.className = "reader-full-size";
      link.title = "Open the figure at full size";
      link.target = "_blank";
      link.rel = "noopener";
      img.replaceWith(link);
      link.appendChild(img);
    });
  };

  /* 4. Search results: the summary of a page is its HTML as text, where math is still LaTeX
     (MathJax never ran on it): "\(\lambda\)" is shown as "λ". */
  const GREEK = {alpha: "α", beta: "β", gamma: "γ", delta: "δ", epsilon: "ε", varepsilon: "ε", zeta: "ζ",
    eta: "η", theta: "θ", kappa: "κ", lambda: "λ", mu: "μ", nu: "ν", xi: "ξ", pi: "π", rho: "ρ",
    sigma: "σ", tau: "τ", phi: "φ", varphi: "φ", chi: "χ", psi: "ψ", omega: "ω", Gamma: "Γ",
    Delta: "Δ", Theta: "Θ", Lambda: "Λ", Sigma: "Σ", Phi: "Φ", Psi: "Ψ", Omega: "Ω",
    infty: "∞", le: "≤", leq: "≤", ge: "≥", geq: "≥", neq: "≠", approx: "≈", sim: "~", to: "→",
    times: "×", cdot: "·", pm: "±", in: "∈", sum: "Σ", prod: "Π", int: "∫", partial: "∂",
    nabla: "∇", mid: "|", ell: "ℓ", log: "log", exp: "exp", max: "max", min: "min", det: "det",
    mathrm: "", mathbb: "", mathcal: "", mathbf: "", operatorname: "", text: "", boldsymbol: "", quad: " ", qquad: " "};
  const plainMath = (tex) => tex
    .replace(/\\(?:mathrm|mathbb|mathcal|mathbf|operatorname|text|boldsymbol)\s*\{([^{}]*)\}/g, "$1")
    .replace(/\\\|/g, "‖")
    .replace(/\\(?:left|right|big|Big|bigg|Bigg)\b/g, "")
    .replace(/\\([A-Za-z]+)/g, (m, name) => (name in GREEK ? GREEK[name] : name))
    .replace(/\\[,;:! ]/g, " ")
    .replace(/[{}]/g, "")
    .replace(/\s+/g, " ")
    .trim();
  const mathAsText = (text) => text
    .replace(/\\\(([\s\S]*?)\\\)/g, (m, tex) => plainMath(tex))
    .replace(/\\\[([\s\S]*?)\\\]/g, (m, tex) => plainMath(tex))
    .replace(/\$\$([\s\S]*?)\$\$/g, (m, tex) => plainMath(tex))
    // a summary is cut out of the page: what is left of a formula at either end
    .replace(/\\[()[\]]/g, "")
    .replace(/\\([A-Za-z]+)/g, (m, name) => (name in GREEK ? GREEK[name] : name));
  const patchSearch = () => {
    // searchtools.js declares `const Search`: a global binding, not a property of window
    if (typeof Search === "undefined" || typeof Search.makeSearchSummary !== "function" || Search.readerPatched) return;
    const makeSearchSummary = Search.makeSearchSummary;
    // the summary is chosen on the raw text (where the search term is), then its math made readable
    Search.makeSearchSummary = (...args) => {
      const summary = makeSearchSummary(...args);
      if (summary) summary.textContent = mathAsText(summary.textContent);
      return summary;
    };
    Search.readerPatched = true;
  };
  window.readerMathAsText = mathAsText;

  ready(() => {
    forwardToggles();
    linkFigures();
    patchSearch();
    markOverflow();
    window.addEventListener("resize", markOverflow);
    window.addEventListener("load", markOverflow);
    // display math is laid out by MathJax after the page loads
    let tries = 0;
    const afterMath = () => (window.MathJax && MathJax.startup && MathJax.startup.promise
      ? MathJax.startup.promise.then(markOverflow) : tries++ < 150 && setTimeout(afterMath, 200));
    if (document.querySelector("script[src*='tex-mml-chtml'], script[src*='mathjax']")) afterMath();
    // outputs that open later (toggles, tabs) are measured when they open
    document.addEventListener("click", () => setTimeout(markOverflow, 50));
  });
})();
