"""Interactive figures that keep working on the static site.

A static page has no Python kernel, so a slider cannot re-run plotting code.
Instead every figure a control can ask for is drawn at build time, and the
controls are linked to a ``Stack`` of images *in the browser* with
``jslink``: moving a slider changes which pre-drawn image is shown.  The same
widget works unchanged in a live notebook.
"""
import base64
import html
import io
import itertools

import ipywidgets as widgets
import matplotlib.pyplot as plt


def png(fig, dpi=80):
    """Render a matplotlib figure to PNG bytes and close it.

    On white, not on the notebook's transparent background: black axes and
    labels stay readable on a dark page or a dark notebook theme.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return buf.getvalue()


def picture(png_bytes, alt, width="560px"):
    """A pre-drawn PNG as a widget, with alt text for readers who cannot see it.

    ipywidgets' ``Image`` has no alt text, so the picture is an ``<img>`` in an
    ``HTML`` widget: its markup, alt included, is part of the saved widget
    state and reaches the static page unchanged.
    """
    data = base64.b64encode(png_bytes).decode("ascii")
    return widgets.HTML(
        value=f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}" '
              'style="width: 100%; height: auto">',
        layout=widgets.Layout(width=width))


def explorer(draw, controls, alt, width="560px"):
    """A figure with one control per parameter, pre-drawn for every setting.

    draw: function(**setting) -> matplotlib Figure, called once per
        combination of control values.
    controls: list of (name, description, values, kind) with kind "slider"
        or "dropdown"; values are the settings offered, in order.  The
        description names the control for every reader (screen readers
        included: book/_static/widget-labels.js gives it to the control).
    alt: what the picture of one setting shows, read out in its place:
        a format string over the control names, or function(**setting) -> str.
    Returns a VBox of the controls above the figure.
    """
    names = [c[0] for c in controls]
    describe = alt if callable(alt) else alt.format
    ui = []
    for _, desc, values, kind in controls:
        # the tooltip names the control too (without one, the label's title reads "null")
        common = dict(options=[(str(v), v) for v in values], description=desc, tooltip=desc,
                      style={"description_width": "initial"})
        ui.append(widgets.SelectionSlider(**common, continuous_update=True,
                                          layout=widgets.Layout(width=width))
                  if kind == "slider" else widgets.Dropdown(**common))

    def build(level, fixed):
        if level == len(controls):
            setting = dict(zip(names, fixed))
            return picture(png(draw(**setting)), describe(**setting), width)
        children = [build(level + 1, fixed + (v,)) for v in controls[level][2]]
        stack = widgets.Stack(children=children, selected_index=0)
        widgets.jslink((ui[level], "index"), (stack, "selected_index"))
        return stack

    return widgets.VBox(ui + [build(0, ())])


def settings(controls):
    """All combinations an explorer will draw (to estimate its build cost)."""
    return list(itertools.product(*[c[2] for c in controls]))
