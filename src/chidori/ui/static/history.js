// Dataset history: a chart of run durations over time (one point per run, coloured by
// outcome) and a switch between the chart and the table. Data: the #runs-data JSON block.
"use strict";
(function () {
  var dataBlock = document.getElementById("runs-data");
  var canvas = document.getElementById("history-chart");
  if (!dataBlock || !canvas || typeof Chart === "undefined") return;
  var runs = JSON.parse(dataBlock.textContent || "[]");
  var COLOURS = {
    SUCCEEDED: "#1f7a3a", FAILED: "#b3261e", CANCELLED: "#6b6f7a",
    RUNNING: "#2a46b5", ADMITTED: "#2a46b5", QUEUED: "#a86b00"
  };
  var SHAPES = { SUCCEEDED: "circle", FAILED: "crossRot", CANCELLED: "rect" };
  var groups = {};
  runs.forEach(function (run) {
    var when = Date.parse(run.started_at || run.created_at);
    var point = { x: when, y: run.duration_seconds === null ? 0 : run.duration_seconds, run: run };
    (groups[run.state] = groups[run.state] || []).push(point);
  });
  var order = ["SUCCEEDED", "FAILED", "CANCELLED", "RUNNING", "ADMITTED", "QUEUED"];
  var datasets = order.filter(function (s) { return groups[s]; }).map(function (state) {
    return {
      label: state.charAt(0) + state.slice(1).toLowerCase(),
      data: groups[state].sort(function (a, b) { return a.x - b.x; }),
      backgroundColor: COLOURS[state] || "#444",
      borderColor: COLOURS[state] || "#444",
      pointStyle: SHAPES[state] || "triangle",
      pointRadius: 5,
      pointHoverRadius: 7,
      borderWidth: 2
    };
  });
  var times = runs.map(function (r) { return Date.parse(r.started_at || r.created_at); });
  var span = times.length ? Math.max.apply(null, times) - Math.min.apply(null, times) : 0;
  function stamp(ms) {
    var iso = new Date(ms).toISOString();
    if (span < 600000) return iso.slice(11, 19);  // within minutes: the time to the second
    if (span < 86400000) return iso.slice(11, 16);
    return iso.slice(0, 16).replace("T", " ");
  }
  function seconds(value) {
    if (value < 1) return value.toFixed(2) + " s";
    if (value < 60) return value.toFixed(1) + " s";
    var m = Math.floor(value / 60), s = Math.round(value % 60);
    return m + " m " + (s < 10 ? "0" : "") + s + " s";
  }
  var chart = new Chart(canvas, {
    type: "scatter",
    data: { datasets: datasets },
    options: {
      animation: false,
      maintainAspectRatio: false,
      scales: {
        x: { type: "linear", title: { display: true, text: "Started (UTC)" },
             ticks: { callback: function (v) { return stamp(v); }, maxRotation: 0, autoSkipPadding: 24 } },
        y: { beginAtZero: true, title: { display: true, text: "Duration" },
             ticks: { callback: function (v) { return seconds(v); } } }
      },
      plugins: {
        legend: { position: "bottom", labels: { usePointStyle: true } },
        tooltip: { callbacks: { label: function (ctx) {
          var run = ctx.raw.run;
          var shown = run.duration_seconds === null ? "not finished" : seconds(run.duration_seconds);
          return "#" + run.id + " " + run.name + ": " + shown + " (" + run.state + ")";
        } } }
      },
      onClick: function (_event, elements) {
        if (!elements.length) return;
        var run = datasets[elements[0].datasetIndex].data[elements[0].index].run;
        if (run.url) window.location.href = run.url;
      }
    }
  });
  window.chidoriHistoryChart = chart;

  var chartPanel = document.getElementById("history-chart-panel");
  var tablePanel = document.getElementById("history-table-panel");
  var chartButton = document.getElementById("view-chart");
  var tableButton = document.getElementById("view-table");
  function show(which) {
    var table = which === "table";
    chartPanel.hidden = table;
    tablePanel.hidden = !table;
    chartButton.setAttribute("aria-pressed", String(!table));
    tableButton.setAttribute("aria-pressed", String(table));
    if (!table) chart.resize();
    if (window.history.replaceState) {
      var url = new URL(window.location.href);
      url.hash = table ? "table" : "";
      window.history.replaceState(null, "", url.toString());
    }
  }
  chartButton.addEventListener("click", function () { show("chart"); });
  tableButton.addEventListener("click", function () { show("table"); });
  if (window.location.hash === "#table") show("table");
})();
