// Settings for the ipywidgets embed manager, which the pages load from
// _static/vendor/html-manager/ (see book/_ext/site_assets.py).  Loaded on
// every page before the manager, without `defer`.
(function () {
  "use strict";
  // The manager's modules (embed-amd.js) find their icon fonts relative to
  // the URLs RequireJS gives their names, which by default lie under the
  // page's folder (book/@jupyter-widgets/...): map the names to the folder
  // the fonts are in.  A `require` object defined before require.js loads is
  // its configuration.
  var folder = new URL("vendor/html-manager", document.currentScript.src).href;
  if (typeof window.require === "undefined") {
    window.require = {
      paths: {
        "@jupyter-widgets": folder,
        "@jupyter-widgets/html-manager/dist": folder,
      },
    };
  }
  window.__jupyter_widgets_assets_path__ = folder + "/";

  // The controls typeset their labels with MathJax 2's API,
  // MathJax.Hub.Queue(["Typeset", MathJax.Hub, element]), whenever
  // window.MathJax exists.  MathJax 3 has no Hub, so the call would throw and
  // the widget would not be drawn.  By DOMContentLoaded the deferred MathJax 3
  // script has replaced its configuration object with itself (the widgets
  // are drawn later, on "load"): give it a Hub that queues the element on
  // MathJax 3's startup promise, as MathJax 3 recommends for late content.
  // If MathJax failed to load, the Hub does nothing and the widgets still work.
  document.addEventListener("DOMContentLoaded", function () {
    var mathjax = window.MathJax;
    if (!mathjax || mathjax.Hub) {
      return;
    }
    mathjax.Hub = {
      Queue: function () {
        if (!mathjax.startup || !mathjax.typesetPromise) {
          return;
        }
        Array.prototype.forEach.call(arguments, function (command) {
          if (Array.isArray(command) && command[0] === "Typeset") {
            var elements = command[2] ? [command[2]] : undefined;
            mathjax.startup.promise = mathjax.startup.promise.then(function () {
              return mathjax.typesetPromise(elements);
            });
          }
        });
      },
    };
  });
})();
