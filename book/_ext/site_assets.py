"""Serve every script, style and font of the site from the site itself.

By default the pages would load MathJax, RequireJS and the ipywidgets embed
manager from public CDNs.  (axe-core, the accessibility checker of the
browser tests, is vendored the same way.)  This extension installs them once from the npm
registry (``tools/vendor/package.json`` and its lock file, with ``npm ci``),
copies the files the pages need into ``book/_static/vendor/`` (ignored by
git, published as ``_static/vendor/``), and drops the script tags of
sphinx-thebe, which would point at a CDN although live code is switched off.
``_config.yml`` points ``mathjax_path`` and ``nb_ipywidgets_js`` at the copies.

The copy is redone only when the lock file or the list below changes, so a
rebuild needs neither Node.js nor the network.
"""
import contextlib
import fcntl
import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from sphinx.errors import ExtensionError
from sphinx.util import logging

ROOT = Path(__file__).resolve().parents[2]
NPM_DIR = ROOT / "tools" / "vendor"
MODULES = NPM_DIR / "node_modules"
TARGET = ROOT / "book" / "_static" / "vendor"
STAMP = TARGET / ".stamp"

# node_modules path -> path under _static/vendor.  MathJax loads its TeX
# extensions, menu, accessibility code and fonts from beside its main file;
# the widget manager loads its icon fonts from beside embed-amd.js.
FILES = {
    "mathjax/LICENSE": "mathjax/LICENSE",
    "mathjax/es5/tex-mml-chtml.js": "mathjax/tex-mml-chtml.js",
    "mathjax/es5/input": "mathjax/input",
    "mathjax/es5/output/chtml": "mathjax/output/chtml",
    "mathjax/es5/ui": "mathjax/ui",
    "mathjax/es5/a11y": "mathjax/a11y",
    "mathjax/es5/sre": "mathjax/sre",
    "requirejs/require.js": "requirejs/require.js",
    "@jupyter-widgets/html-manager/dist/embed-amd.js": "html-manager/embed-amd.js",
    # not loaded by the pages: the browser tests run it on every page
    # (tests/test_site.py), so the site checks its accessibility offline too
    "axe-core/axe.min.js": "axe-core/axe.min.js",
    "axe-core/LICENSE": "axe-core/LICENSE",
}
# the fonts the widget manager's bundled CSS refers to, whatever their hashed names
FONT_SUFFIXES = (".woff2", ".woff", ".ttf", ".eot", ".svg")

logger = logging.getLogger(__name__)


def _fingerprint():
    lock = (NPM_DIR / "package-lock.json").read_bytes()
    return hashlib.sha256(lock + json.dumps(FILES, sort_keys=True).encode()).hexdigest()


@contextlib.contextmanager
def _exclusive():
    """Serialise vendoring between builds started at the same time."""
    with open(NPM_DIR / ".vendor.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _npm_ci():
    npm = shutil.which("npm")
    if npm is None:
        raise ExtensionError(
            "site_assets: npm (Node.js 18 or later) is needed once, to install MathJax, "
            "RequireJS and the widget manager from tools/vendor/package-lock.json; "
            "install Node.js and npm (e.g. apt-get install nodejs npm) and build again")
    proc = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund",
                           "--loglevel=error"],
                          cwd=NPM_DIR, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ExtensionError(f"site_assets: `npm ci` in {NPM_DIR} failed:\n"
                             f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}")


def _copy_into(dest):
    for source, target in FILES.items():
        src, dst = MODULES / source, dest / target
        if not src.exists():
            raise ExtensionError(f"site_assets: {src} is missing after `npm ci`")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
    dist = MODULES / "@jupyter-widgets" / "html-manager" / "dist"
    for font in dist.iterdir():
        if font.suffix in FONT_SUFFIXES:
            shutil.copy2(font, dest / "html-manager" / font.name)


def vendor(app=None, config=None):
    """Make book/_static/vendor match the lock file (fast when it already does)."""
    want = _fingerprint()
    if STAMP.exists() and STAMP.read_text() == want:
        return
    with _exclusive():
        if STAMP.exists() and STAMP.read_text() == want:
            return  # another build did it while we waited
        logger.info("site_assets: installing the site's scripts and fonts with npm ci")
        _npm_ci()
        # build beside the target and swap, so no build ever sees half a copy
        TARGET.parent.mkdir(parents=True, exist_ok=True)
        fresh = Path(tempfile.mkdtemp(prefix=".vendor-", dir=TARGET.parent))
        fresh.chmod(0o755)   # mkdtemp's 0700 would outlive the rename
        try:
            _copy_into(fresh)
            (fresh / ".stamp").write_text(want)
            if TARGET.exists():
                shutil.rmtree(TARGET)
            fresh.rename(TARGET)
        finally:
            shutil.rmtree(fresh, ignore_errors=True)


def _thebe_enabled(config):
    return bool((config.html_theme_options or {}).get("launch_buttons", {}).get("thebe"))


def drop_thebe_scripts(app, pagename, templatename, context, doctree):
    """Without live code, sphinx-thebe's scripts only name a CDN (and declare it twice)."""
    if _thebe_enabled(app.config) or "script_files" not in context:
        return
    context["script_files"] = [
        js for js in context["script_files"]
        if "sphinx-thebe" not in str(js.filename or "")
        and "THEBE_JS_URL" not in js.attributes.get("body", "")]


def setup(app):
    app.connect("config-inited", vendor)
    app.connect("html-page-context", drop_thebe_scripts, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
