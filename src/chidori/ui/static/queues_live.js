// Queues page: every 5 s (while the tab is visible) fetch its live sections (capacity, warm
// drivers, waiting count, queues, servers) and patch only what changed. In a table, a row is
// replaced only when its HTML changed (rows are matched by data-key), new rows are inserted in
// the server's order and rows gone are removed; unchanged rows stay the same elements, so
// keyboard focus and scroll stay where they were.
"use strict";
(function () {
  var marker = document.getElementById("queues-live");
  if (!marker) return;
  var src = marker.getAttribute("data-src");
  var PERIOD = parseInt(marker.getAttribute("data-period"), 10) || 5000;
  var status = document.getElementById("queues-status");
  var FOCUSABLE = "a, button, input, select, textarea, [tabindex]";

  function say(text) { if (status && status.textContent !== text) status.textContent = text; }

  function focusIndex(element) {
    var active = document.activeElement;
    if (!active || !element.contains(active)) return -1;
    return Array.prototype.indexOf.call(element.querySelectorAll(FOCUSABLE), active);
  }

  function refocus(element, index) {
    if (index < 0) return;
    var again = element.querySelectorAll(FOCUSABLE)[index];
    if (again) again.focus();
  }

  function patchRows(body, html) {
    var holder = document.createElement("tbody");
    holder.innerHTML = html;  // rendered and escaped by the server's templates
    var current = {};
    Array.prototype.slice.call(body.children).forEach(function (row) {
      var key = row.getAttribute("data-key");
      if (key) current[key] = row; else body.removeChild(row);  // an "empty" row
    });
    var wanted = {};
    var previous = null;
    Array.prototype.slice.call(holder.children).forEach(function (row) {
      var key = row.getAttribute("data-key");
      if (!key) { body.appendChild(row); return; }
      wanted[key] = true;
      var old = current[key];
      if (old && old.outerHTML === row.outerHTML) {
        row = old;
      } else if (old) {
        var index = focusIndex(old);
        body.replaceChild(row, old);
        refocus(row, index);
      } else {
        body.insertBefore(row, previous ? previous.nextSibling : body.firstChild);
      }
      previous = row;
    });
    Object.keys(current).forEach(function (key) {
      if (!wanted[key] && current[key].parentNode === body) body.removeChild(current[key]);
    });
  }

  function patch(sections) {
    Object.keys(sections).forEach(function (id) {
      var element = document.getElementById(id);
      if (!element) return;
      var html = sections[id];
      if (element.tagName === "TBODY") { patchRows(element, html); return; }
      var probe = document.createElement(element.tagName);
      probe.innerHTML = html;
      if (probe.innerHTML.trim() === element.innerHTML.trim()) return;
      var index = focusIndex(element);
      element.innerHTML = html;
      refocus(element, index);
    });
  }

  function refresh() {
    if (document.hidden) { window.setTimeout(refresh, PERIOD); return; }
    fetch(src, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (answer) {
        patch(answer.sections || {});
        say("Live: refreshed every " + PERIOD / 1000 + " s.");
      })
      .catch(function (error) { say("Could not refresh this page (" + error.message + "); retrying."); })
      .then(function () { window.setTimeout(refresh, PERIOD); });
  }
  say("Live: refreshed every " + PERIOD / 1000 + " s.");
  window.setTimeout(refresh, PERIOD);
})();
