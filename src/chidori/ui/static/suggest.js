// Filter inputs suggest existing values: schema, table, queue, cluster and user fields (jobs
// list, dataset history, dataset index) get a <datalist> filled from
// GET /api/v1/datasets/suggestions as the user types (matching ignores case).
"use strict";
(function () {
  var FIELDS = {
    "f-schema": "schema", "f-table": "table", "f-queue": "queue", "f-cluster": "cluster",
    "f-user": "user", "h-schema": "schema", "h-table": "table"
  };
  var inputs = [];
  Object.keys(FIELDS).forEach(function (id) {
    var input = document.getElementById(id);
    if (input) inputs.push([input, FIELDS[id]]);
  });
  document.querySelectorAll("input[data-suggest]").forEach(function (input) {
    inputs.push([input, input.getAttribute("data-suggest")]);
  });
  inputs.forEach(function (pair) {
    var input = pair[0], field = pair[1];
    var list = document.createElement("datalist");
    list.id = input.id + "-suggestions";
    input.parentNode.appendChild(list);
    input.setAttribute("list", list.id);
    var asked = null, timer = null;
    function schemaFor() {
      var other = document.getElementById(input.id.replace(/table$/, "schema"));
      return field === "table" && other && other !== input ? other.value : "";
    }
    function ask() {
      var key = input.value + "\u0000" + schemaFor();
      if (key === asked) return;
      asked = key;
      var params = new URLSearchParams({ field: field, prefix: input.value });
      if (schemaFor()) params.set("schema", schemaFor());
      fetch("/api/v1/datasets/suggestions?" + params.toString(), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : { values: [] }; })
        .then(function (data) {
          while (list.firstChild) list.removeChild(list.firstChild);
          data.values.forEach(function (value) {
            var option = document.createElement("option");
            option.value = value;
            list.appendChild(option);
          });
        })
        .catch(function () { /* suggestions are a convenience */ });
    }
    input.addEventListener("focus", ask);
    input.addEventListener("input", function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(ask, 150);
    });
  });
})();
