// Job page: while the job is not final, fetch its live sections (state, actions, summary,
// progress, attempts, timeline) every 2 s and patch only those that changed; one more fetch
// after it ends. Cancel is sent without leaving the page.
"use strict";
(function () {
  var marker = document.getElementById("job-live");
  if (!marker) return;
  var src = marker.getAttribute("data-src");
  var status = document.getElementById("live-status");
  var PERIOD = 2000;
  var last = {};
  var timer = null;
  var stopped = marker.getAttribute("data-final") === "1";
  var stage = window.ChidoriStages;

  ["live-badge", "live-actions", "live-summary", "live-progress", "live-attempts", "live-timeline"]
    .forEach(function (id) {
      var element = document.getElementById(id);
      if (element) last[id] = null;  // unknown until the first answer: patched only if different
    });

  function focusPath(container) {
    var active = document.activeElement;
    if (!active || !container.contains(active)) return null;
    if (active.id) return { id: active.id };
    var all = container.querySelectorAll("a, button, input, select, textarea, [tabindex]");
    return { index: Array.prototype.indexOf.call(all, active) };
  }

  function restoreFocus(container, path) {
    if (!path) return;
    var target = path.id ? document.getElementById(path.id)
      : container.querySelectorAll("a, button, input, select, textarea, [tabindex]")[path.index];
    if (target && typeof target.focus === "function") target.focus();
  }

  function patch(sections) {
    Object.keys(sections).forEach(function (id) {
      var element = document.getElementById(id);
      var html = sections[id];
      if (!element) return;
      if (last[id] === null) {
        // First answer: compare with what the server rendered into the page.
        last[id] = element.innerHTML;
      }
      if (html === last[id] || html.trim() === element.innerHTML.trim()) { last[id] = html; return; }
      var path = focusPath(element);
      element.innerHTML = html;  // rendered and escaped by the server's templates
      last[id] = html;
      if (id === "live-progress") element.hidden = html.trim() === "";
      restoreFocus(element, path);
    });
    if (stage) stage();
  }

  function schedule(delay) {
    if (timer) window.clearTimeout(timer);
    timer = window.setTimeout(refresh, delay);
  }

  function refresh() {
    timer = null;
    if (document.hidden) { schedule(PERIOD); return; }
    fetch(src, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (response.status === 401) { stopped = true; throw new Error("signed out: reload to sign in"); }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (answer) {
        patch(answer.sections || {});
        if (answer.final) {
          if (!stopped && status) status.textContent = "Job " + answer.state + ".";
          stopped = true;
        } else {
          schedule(PERIOD);
        }
      })
      .catch(function (error) {
        if (status) status.textContent = "Could not refresh this page (" + error.message + ")";
        if (!stopped) schedule(PERIOD * 2);
      });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-live-cancel")) return;
    if (event.defaultPrevented) return;  // not confirmed (app.js)
    event.preventDefault();
    var button = form.querySelector("button");
    if (button) { button.disabled = true; button.textContent = "Cancelling…"; }
    fetch(form.action, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-Chidori-Live": "1" },
      body: new URLSearchParams(new FormData(form)),
    }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      if (status) status.textContent = "Cancel requested.";
      stopped = false;
      schedule(0);
    }).catch(function (error) {
      if (button) { button.disabled = false; button.textContent = "Cancel job"; }
      if (status) status.textContent = "Cancel failed (" + error.message + ")";
    });
  });

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && !stopped) schedule(0);
  });
  // One fetch even for a job the page showed as final: it may have changed since.
  schedule(stopped ? 0 : PERIOD);
})();
