"""Turn off thebe (live code cells from a public CDN) in the rendered book.

Jupyter Book 1 always loads sphinx-thebe, which injects its configuration script twice on
every page (a console SyntaxError) and points at a CDN that an offline reader cannot reach.
The book offers Colab instead, so the thebe scripts are removed from every page.
"""


def _drop_thebe(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if scripts is None:
        return
    context["script_files"] = [
        s for s in scripts if "THEBE_JS_URL" not in (getattr(s, "attributes", {}) or {}).get("body", "")
        and "sphinx-thebe" not in str(s)
    ]


def setup(app):
    app.connect("html-page-context", _drop_thebe, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
