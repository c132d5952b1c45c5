// Jobs page: every 5 s (while the tab is visible) fetch this view's rows again (same URL,
// fragment=1) and patch only what changed: a row whose data-version moved is replaced, new
// rows are inserted where the server puts them, rows gone from the view are removed. Rows that
// did not change stay the same elements, so keyboard focus and scroll stay where they were.
"use strict";
(function () {
  var body = document.getElementById("job-rows");
  var status = document.getElementById("refresh-status");
  var counts = document.getElementById("state-counts");
  if (!body) return;
  var PERIOD = parseInt(body.getAttribute("data-period"), 10) || 5000;
  var FOCUSABLE = "a, button, input, select, textarea, [tabindex]";

  function say(text) { if (status && status.textContent !== text) status.textContent = text; }

  function replaceRow(old, fresh) {
    var active = document.activeElement;
    var index = -1;
    if (active && old.contains(active)) {
      index = Array.prototype.indexOf.call(old.querySelectorAll(FOCUSABLE), active);
    }
    body.replaceChild(fresh, old);
    if (index >= 0) {
      var again = fresh.querySelectorAll(FOCUSABLE)[index];
      if (again) again.focus();
    }
  }

  function recount() {
    if (!counts) return;
    var tally = {};
    var order = [];
    body.querySelectorAll("tr[data-state]").forEach(function (row) {
      var state = row.getAttribute("data-state");
      if (!(state in tally)) { tally[state] = 0; order.push(state); }
      tally[state] += 1;
    });
    var wanted = order.map(function (s) { return tally[s] + " " + s; }).join("|");
    if (counts.getAttribute("data-shown") === wanted) return;
    counts.setAttribute("data-shown", wanted);
    counts.replaceChildren();
    var known = ["QUEUED", "ADMITTED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"];
    order.sort(function (a, b) { return known.indexOf(a) - known.indexOf(b); });
    order.forEach(function (state) {
      var badge = document.createElement("span");
      badge.className = "state state-" + state.toLowerCase();
      badge.textContent = tally[state] + " " + state;
      counts.appendChild(badge);
      counts.appendChild(document.createTextNode(" "));
    });
  }

  function patch(html) {
    var holder = document.createElement("tbody");
    holder.innerHTML = html;  // rendered and escaped by the server's templates
    var fresh = Array.prototype.slice.call(holder.children);
    var current = {};
    Array.prototype.forEach.call(body.children, function (row) {
      var id = row.getAttribute("data-id");
      if (id) current[id] = row; else body.removeChild(row);  // the "no jobs" row
    });
    var wanted = {};
    var previous = null;  // the last row placed, in the server's order
    fresh.forEach(function (row) {
      var id = row.getAttribute("data-id");
      if (!id) { body.appendChild(row); return; }
      wanted[id] = true;
      var old = current[id];
      if (old) {
        if (old.getAttribute("data-version") !== row.getAttribute("data-version")) replaceRow(old, row);
        else row = old;
      } else if (previous && previous.nextSibling) {
        body.insertBefore(row, previous.nextSibling);
      } else if (previous) {
        body.appendChild(row);
      } else {
        body.insertBefore(row, body.firstChild);
      }
      previous = row;
    });
    Object.keys(current).forEach(function (id) {
      if (!wanted[id] && current[id].parentNode === body) body.removeChild(current[id]);
    });
    recount();
  }

  function refresh() {
    if (document.hidden) { window.setTimeout(refresh, PERIOD); return; }
    var url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    fetch(url.toString(), { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (!response.ok || response.redirected) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        patch(html);
        say("Live: refreshed every " + PERIOD / 1000 + " s.");
      })
      .catch(function () { say("Could not refresh the list; retrying."); })
      .then(function () { window.setTimeout(refresh, PERIOD); });
  }
  say("Live: refreshed every " + PERIOD / 1000 + " s.");
  window.setTimeout(refresh, PERIOD);
})();
