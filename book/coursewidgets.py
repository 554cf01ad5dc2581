"""Interactive figures that keep working on the static site.

A static page has no Python kernel, so a slider cannot re-run plotting code.
Instead every figure a control can ask for is drawn at build time, and the
controls are linked to a ``Stack`` of images *in the browser* with
``jslink``: moving a slider changes which pre-drawn image is shown.  The same
widget works unchanged in a live notebook.
"""
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


def explorer(draw, controls, width="560px"):
    """A figure with one control per parameter, pre-drawn for every setting.

    draw: function(**setting) -> matplotlib Figure, called once per
        combination of control values.
    controls: list of (name, description, values, kind) with kind "slider"
        or "dropdown"; values are the settings offered, in order.
    Returns a VBox of the controls above the figure.
    """
    names = [c[0] for c in controls]
    makers = {"slider": widgets.SelectionSlider, "dropdown": widgets.Dropdown}
    ui = [makers[kind](options=[(str(v), v) for v in values], description=desc,
                       continuous_update=True,
                       style={"description_width": "initial"},
                       layout=widgets.Layout(width=width))
          if kind == "slider" else
          makers[kind](options=[(str(v), v) for v in values], description=desc,
                       style={"description_width": "initial"})
          for (_, desc, values, kind) in controls]

    def build(level, fixed):
        if level == len(controls):
            setting = dict(zip(names, fixed))
            return widgets.Image(value=png(draw(**setting)), format="png",
                                 layout=widgets.Layout(width=width))
        children = [build(level + 1, fixed + (v,)) for v in controls[level][2]]
        stack = widgets.Stack(children=children, selected_index=0)
        widgets.jslink((ui[level], "index"), (stack, "selected_index"))
        return stack

    return widgets.VBox(ui + [build(0, ())])


def settings(controls):
    """All combinations an explorer will draw (to estimate its build cost)."""
    return list(itertools.product(*[c[2] for c in controls]))
