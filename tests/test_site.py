"""The course website, built by tools/build_site.py from the committed notebooks, read in the
real browser (Debian's Chromium through playwright): every page loads offline with no console
error, every image decodes, math is typeset, no internal link is broken, axe-core finds no
serious or critical accessibility violation, and figures carry the alt text of their output."""

from __future__ import annotations

import functools
import html
import importlib.util
import os
import re
import sys
import threading
import urllib.parse
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
EXERCISES = sorted(p.stem for p in (ROOT / "exercises").glob("*.ipynb"))


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


lab = _load("labdriver", ROOT / "tools" / "labdriver.py")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    build_site = _load("build_site", ROOT / "tools" / "build_site.py")
    out = tmp_path_factory.mktemp("site") / "html"
    index = build_site.build(out)
    assert index == out / "index.html" and index.is_file()
    return out


@pytest.fixture(scope="module")
def server(site):
    """The built site over HTTP on 127.0.0.1 (as GitHub Pages serves it), stopped afterwards."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.mark.slow
def test_pages_in_course_order_without_solutions(site):
    text = (site / "index.html").read_text()
    order = [m for m in re.findall(r'href="((?:notebooks|exercises)/[^"#]+)\.html"', text)]
    expected = [f"notebooks/{s}" for s in LESSONS] + [f"exercises/{s}" for s in EXERCISES]
    assert list(dict.fromkeys(order)) == expected
    assert (site / "instructors.html").is_file() and "instructors.html" in text
    assert not (site / "solutions").exists()
    assert not list(site.rglob("*solutions*.html"))


@pytest.mark.slow
def test_each_notebook_page_has_colab_and_binder_launch_buttons(site):
    for page in [f"notebooks/{s}" for s in LESSONS] + [f"exercises/{s}" for s in EXERCISES]:
        text = html.unescape((site / f"{page}.html").read_text())
        assert "colab.research.google.com/github/" in text and f"/{page}.ipynb" in text, page
        assert "mybinder.org/v2/gh/" in text and f"urlpath=lab/tree/{page}.ipynb" in text, page


@pytest.mark.slow
def test_figures_carry_the_alt_text_of_their_output(site):
    """Each figure whose notebook output names its content (an explorer's text, or the alt text
    a course figure stores in the output metadata) has exactly that alt text on its page."""
    conf = _load("site_conf", ROOT / "docs" / "conf.py")
    alts = {**conf.figure_alt_texts(ROOT / "notebooks"), **conf.figure_alt_texts(ROOT / "exercises")}
    assert alts, "no notebook output carries alt text"
    images = {}
    for page in site.rglob("*.html"):
        for src, alt in _images(page.read_text()):
            images[Path(src).stem] = alt
    shown = [digest for digest in alts if digest in images]
    assert shown, "no figure with alt text reached the site"
    for digest in shown:
        assert images[digest] == alts[digest], digest


def _images(text):
    for tag in re.findall(r"<img\b[^>]*>", text):
        src = re.search(r'src="([^"]+)"', tag)
        alt = re.search(r'alt="([^"]*)"', tag)
        yield (src[1] if src else ""), html.unescape(alt[1]) if alt else None


def _pages(site):
    """Every page of the site (not the theme's template fragments under _static/)."""
    return sorted(
        rel for rel in (p.relative_to(site).as_posix() for p in site.rglob("*.html")) if not rel.startswith("_")
    )


PAGE_CHECK = r"""
async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const imgs = [...document.images];
  await Promise.all(imgs.map(i => i.decode().catch(() => null)));
  return {
    images: imgs.map(i => ({src: i.getAttribute('src'), width: i.naturalWidth, alt: i.getAttribute('alt')})),
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    ids: [...document.querySelectorAll('[id]')].map(e => e.id),
    math: document.querySelectorAll('mjx-container').length,
    rawMath: document.querySelectorAll('.math').length,
  };
}
"""


@pytest.mark.slow
@pytest.mark.browser
def test_every_page_in_the_browser(site, server, tmp_path):
    if not lab.CHROMIUM.exists():
        reason = f"{lab.CHROMIUM} not found: run tools/install_browser.sh to enable the site's browser test"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import sync_playwright

    axe = Axe()
    problems, pages_seen, ids_by_page, links = [], {}, {}, set()
    with sync_playwright() as pw:
        context = lab.launch_chromium(pw, tmp_path / "profile")
        try:
            external = []
            context.route(
                re.compile(r"^(?!http://127\.0\.0\.1:).*"),
                lambda route: (external.append(route.request.url), route.abort()),
            )
            page = context.new_page()
            errors = []
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            for rel in _pages(site):
                errors.clear()
                external.clear()
                response = page.goto(f"{server}/{rel}", wait_until="load")
                assert response is not None and response.ok, rel
                found = page.evaluate(PAGE_CHECK)
                pages_seen[rel] = found
                ids_by_page[rel] = set(found["ids"])
                links.update((rel, link) for link in found["links"])
                for img in found["images"]:
                    if img["width"] == 0:
                        problems.append(f"{rel}: image {img['src']} does not decode")
                    if not img["alt"]:
                        problems.append(f"{rel}: image {img['src']} has no alt text")
                if found["rawMath"] and found["math"] == 0:
                    problems.append(f"{rel}: {found['rawMath']} math elements, none typeset by MathJax")
                problems += [f"{rel}: {e}" for e in errors]
                problems += [f"{rel}: requested {u} (the site must work offline)" for u in external]
                result = axe.run(page)
                for v in result.response["violations"]:
                    if v["impact"] in ("serious", "critical"):
                        targets = [n["target"] for n in v["nodes"]][:3]
                        problems.append(f"{rel}: axe {v['impact']} {v['id']}: {v['help']} at {targets}")
        finally:
            context.close()
    for rel, link in sorted(links):
        if not link.startswith(server):
            continue
        target = urllib.parse.urlsplit(link)
        path = urllib.parse.unquote(target.path).lstrip("/") or "index.html"
        if path.endswith("/"):
            path += "index.html"
        if not (site / path).is_file():
            problems.append(f"{rel}: broken link to {link}")
        elif target.fragment and path in ids_by_page and target.fragment not in ids_by_page[path]:
            problems.append(f"{rel}: link to a missing anchor {link}")
    assert set(pages_seen) >= {f"notebooks/{s}.html" for s in LESSONS} | {"index.html", "instructors.html"}
    assert sum(p["math"] for p in pages_seen.values()) > 0, "no page shows typeset math"
    assert not problems, "\n".join(problems[:60])


def test_links_to_files_outside_the_site_point_to_the_repository(tmp_path):
    """A lesson's link to a solution (not published on the site) opens it in the repository; a
    link to a page of the site stays relative; a link to nothing stops the build."""
    build_site = _load("build_site", ROOT / "tools" / "build_site.py")
    settings = build_site.notebook_headers.read_settings(ROOT)
    staging = tmp_path / "src"
    (staging / "notebooks").mkdir(parents=True)
    (staging / "exercises").mkdir()
    page = staging / "notebooks" / "01_dense_attention.ipynb"
    page.write_text("{}")
    (staging / "exercises" / "ex1_dense.ipynb").write_text("{}")
    assert (
        build_site.repository_link("../exercises/ex1_dense.ipynb", page, staging, settings)
        == "../exercises/ex1_dense.ipynb"
    )
    assert (
        build_site.repository_link("../solutions/ex1_dense.ipynb#top", page, staging, settings)
        == f"{settings.repository}/blob/{settings.branch}/solutions/ex1_dense.ipynb#top"
    )
    assert (
        build_site.repository_link("../globattn_lite", page, staging, settings)
        == f"{settings.repository}/tree/{settings.branch}/globattn_lite"
    )
    with pytest.raises(SystemExit, match=r"link to '\.\./nowhere\.md', which is not in the repository"):
        build_site.repository_link("../nowhere.md", page, staging, settings)


@pytest.mark.slow
def test_every_figure_on_the_site_says_what_it_shows(site):
    """After the lessons are executed with alt metadata, no course figure falls back to its file name."""
    for page in site.rglob("*.html"):
        rel = page.relative_to(site).as_posix()
        if rel.startswith("_"):
            continue
        for src, alt in _images(page.read_text()):
            if "_images/" in src:
                assert alt and not alt.endswith(".png"), f"{rel}: figure {src} has no alt text ({alt!r})"
