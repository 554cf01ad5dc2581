// Accessible names for the controls of the widgets (book/coursewidgets.py).
//
// ipywidgets draws a slider's handle as <div role="slider"> beside a <label>
// that holds the slider's description, without tying the two together, so
// a screen reader announces an unnamed slider, and the value it reads is the
// position of the handle, not the setting shown.  As the widget manager draws
// the widgets (after "load"), each control left without a name is named
// after its widget's description, and a slider's handle says the setting its
// readout shows.  Loaded on every page; it does nothing where there is no
// widget.
(function () {
  "use strict";
  var CONTROLS = '[role="slider"], select, input, textarea, button';

  function hasName(control) {
    return control.hasAttribute("aria-label") || control.hasAttribute("aria-labelledby") ||
      (control.labels && control.labels.length > 0);
  }

  function label(widget) {
    var description = widget.querySelector(":scope > .widget-label");
    return description ? description.textContent.trim() : "";
  }

  function name(root) {
    root.querySelectorAll(".widget-inline-hbox").forEach(function (widget) {
      var text = label(widget);
      if (!text) {
        return;
      }
      widget.querySelectorAll(CONTROLS).forEach(function (control) {
        if (!hasName(control) || control.dataset.namedFrom === "description") {
          control.setAttribute("aria-label", text);
          control.dataset.namedFrom = "description";
        }
      });
      var readout = widget.querySelector(".widget-readout");
      widget.querySelectorAll('[role="slider"]').forEach(function (handle) {
        if (readout && readout.textContent.trim()) {
          handle.setAttribute("aria-valuetext", readout.textContent.trim());
        }
      });
    });
  }

  function start() {
    name(document);
    new MutationObserver(function (changes) {
      var seen = new Set();
      changes.forEach(function (change) {
        var node = change.target.nodeType === 1 ? change.target : change.target.parentElement;
        var widget = node && (node.closest(".widget-subarea") || node);
        if (widget && !seen.has(widget)) {
          seen.add(widget);
          name(widget);
        }
      });
    }).observe(document.body, {childList: true, subtree: true, characterData: true});
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
