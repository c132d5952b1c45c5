// Spark stage summary of a finished job: fetched once from the progress API (data-src) and
// drawn as a table. Absent or empty data draws nothing (not every server records progress).
"use strict";
(function () {
  function bytes(value) {
    if (typeof value !== "number" || value <= 0) return "";
    var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (value >= 1024 && i < units.length - 1) { value /= 1024; i += 1; }
    return value.toFixed(i ? 1 : 0) + " " + units[i];
  }
  function seconds(ms) { return typeof ms === "number" ? (ms / 1000).toFixed(1) + " s" : ""; }
  function cell(row, text, numeric) {
    var td = document.createElement("td");
    td.textContent = text === undefined || text === null ? "" : String(text);
    if (numeric) td.className = "num";
    row.appendChild(td);
  }
  function draw(box, stages) {
    var table = document.createElement("table");
    table.className = "jobs";
    table.id = "stage-table";
    var caption = document.createElement("caption");
    caption.textContent = "Stages (" + stages.length + ")";
    table.appendChild(caption);
    var head = table.createTHead().insertRow();
    ["Stage", "Name", "State", "Tasks", "Failed", "Duration", "Input", "Output", "Shuffle read",
      "Shuffle write", "Spill"].forEach(function (name) {
      var th = document.createElement("th");
      th.scope = "col";
      th.textContent = name;
      head.appendChild(th);
    });
    var body = table.createTBody();
    stages.forEach(function (s) {
      var row = body.insertRow();
      cell(row, s.stage_id + (s.attempt ? "." + s.attempt : ""), true);
      cell(row, s.name);
      cell(row, s.state);
      cell(row, s.tasks_done + "/" + s.tasks_total, true);
      cell(row, s.tasks_failed || "", true);
      cell(row, seconds(s.duration_ms), true);
      cell(row, bytes(s.input_bytes), true);
      cell(row, bytes(s.output_bytes), true);
      cell(row, bytes(s.shuffle_read_bytes), true);
      cell(row, bytes(s.shuffle_write_bytes), true);
      cell(row, bytes(s.spill_bytes), true);
    });
    var wrap = document.createElement("div");
    wrap.className = "table-wrap";
    wrap.appendChild(table);
    box.replaceChildren(wrap);
  }
  function load() {
    var box = document.getElementById("stage-summary");
    if (!box || box.getAttribute("data-loaded") === "1" || !box.getAttribute("data-src")) return;
    box.setAttribute("data-loaded", "1");
    fetch(box.getAttribute("data-src"), { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (answer) {
        var stages = answer && Array.isArray(answer.stages) ? answer.stages : [];
        if (stages.length) draw(box, stages);
      })
      .catch(function () {});
  }
  window.ChidoriStages = load;
  load();
})();
