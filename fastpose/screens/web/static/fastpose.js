// fastpose web view: the little the pages do in the browser. Everything is drawn on the server; this file only
// (1) enables "Compare selected" once two runs are ticked, and (2) refreshes a running run's page: it asks the
// server for the page's live part (HTML the server escaped) every few seconds and swaps it in, until the run
// is no longer running. No inline script anywhere: the Content-Security-Policy forbids it.
(function () {
  "use strict";

  function setupPick() {
    var form = document.getElementById("pick");
    if (!form) { return; }
    var button = document.getElementById("compare-btn");
    var shown = document.getElementById("picked");
    function update() {
      var n = form.querySelectorAll("input.pick:checked").length;
      button.disabled = n < 2;
      shown.textContent = n ? n + " selected" : "";
    }
    form.addEventListener("change", update);
    update();
  }

  function setupLive() {
    var live = document.getElementById("live");
    if (!live || live.getAttribute("data-status") !== "running") { return; }
    var url = live.getAttribute("data-live");
    var every = 1000 * (parseFloat(live.getAttribute("data-poll")) || 5);
    var polls = 0;
    function poll() {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (response) {
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.text();
        })
        .then(function (text) {
          var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("live");
          if (!fresh) { throw new Error("no live part"); }
          fresh = document.importNode(fresh, true);
          live.replaceWith(fresh);
          live = fresh;
          polls += 1;
          document.body.setAttribute("data-refreshed", String(polls));
          if (fresh.getAttribute("data-status") === "running") { setTimeout(poll, every); }
        })
        .catch(function () { setTimeout(poll, every * 2); });
    }
    setTimeout(poll, every);
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupPick();
    setupLive();
  });
})();
