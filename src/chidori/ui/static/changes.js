// "What changed since the last good run" on a failed run's page: GET /api/v1/jobs/{id}/changes
// (with the session cookie), shown as tables: spec and conf differences, timings against the
// dataset's medians, and the first error line (a link into the log viewer, #L<n>).
"use strict";
(function () {
  var section = document.getElementById("run-changes");
  var body = document.getElementById("changes-body");
  if (!section || !body) return;
  var LABELS = { duration: "Duration", queue_wait: "Queue wait", startup: "Start-up", run: "Run time" };

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    (children || []).forEach(function (c) {
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }
  function shown(value) {
    if (value === null || value === undefined) return "(not set)";
    return typeof value === "string" ? value : JSON.stringify(value);
  }
  function seconds(value) {
    if (value === null || value === undefined) return "—";
    if (value < 60) return value.toFixed(1) + " s";
    var m = Math.floor(value / 60), s = Math.round(value % 60);
    return m + " m " + (s < 10 ? "0" : "") + s + " s";
  }
  function table(id, caption, head, rows) {
    var thead = el("thead", {}, [el("tr", {}, head.map(function (h) { return el("th", { scope: "col" }, [h]); }))]);
    var tbody = el("tbody", {}, rows);
    return el("table", { class: "changes", id: id }, [el("caption", { class: "sr-only" }, [caption]), thead, tbody]);
  }
  function diffRows(changes) {
    return changes.map(function (c) {
      return el("tr", {}, [el("th", { scope: "row" }, [el("code", {}, [c.key])]),
        el("td", {}, [el("code", {}, [shown(c.before)])]), el("td", {}, [el("code", {}, [shown(c.after)])])]);
    });
  }

  function show(data) {
    while (body.firstChild) body.removeChild(body.firstChild);
    if (!data.baseline) {
      body.appendChild(el("p", { id: "changes-no-baseline" }, ["This dataset has no successful run before this one to compare with."]));
    } else {
      var b = data.baseline;
      body.appendChild(el("p", {}, ["Compared with the last good run, ",
        el("a", { href: "/ui/jobs/" + b.id, id: "changes-baseline" }, ["#" + b.id + " " + b.name]),
        " (" + (b.finished_at || "").replace("T", " ").slice(0, 19) + " UTC)."]));
      body.appendChild(el("h3", {}, ["Conf"]));
      body.appendChild(data.conf.length
        ? table("changes-conf", "Conf differences", ["Key", "Last good run", "This run"], diffRows(data.conf))
        : el("p", { class: "hint" }, ["The same conf."]));
      body.appendChild(el("h3", {}, ["Spec"]));
      body.appendChild(data.spec.length
        ? table("changes-spec", "Spec differences", ["Field", "Last good run", "This run"], diffRows(data.spec))
        : el("p", { class: "hint" }, ["The same spec (the name aside)."]));
      if (data.packages && data.packages.length) {
        body.appendChild(el("h3", {}, ["Python packages"]));
        body.appendChild(el("ul", { id: "changes-packages" },
          data.packages.map(function (change) { return el("li", {}, [change]); })));
      }
    }
    body.appendChild(el("h3", {}, ["Timings"]));
    body.appendChild(table("changes-timings", "Timings against the dataset's medians", ["", "This run", "Dataset p50", "Ratio"],
      data.timings.map(function (t) {
        var ratio = t.ratio === null ? "—" : t.ratio.toFixed(2) + "×";
        var cell = el("td", { class: "num" }, [ratio]);
        if (t.ratio !== null && t.ratio > 1.5) cell.className += " slower";
        return el("tr", {}, [el("th", { scope: "row" }, [LABELS[t.name] || t.name]),
          el("td", { class: "num" }, [seconds(t.seconds)]), el("td", { class: "num" }, [seconds(t.p50_seconds)]), cell]);
      })));
    body.appendChild(el("h3", {}, ["First error"]));
    if (data.first_error) {
      body.appendChild(el("p", {}, [el("a", { href: "#L" + data.first_error.line, id: "changes-error-link" }, ["Line " + data.first_error.line]), ": ",
        el("code", { id: "changes-error" }, [data.first_error.text])]));
    } else {
      body.appendChild(el("p", { class: "hint" }, ["No error line in the log."]));
    }
  }

  fetch(section.getAttribute("data-src"), { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    })
    .then(show)
    .catch(function (error) { body.textContent = "Could not compare with the last good run: " + error.message; });
})();
