// Jobs page: while any listed job is active, refresh the rows every 5 s (same URL, fragment=1).
"use strict";
(function () {
  var body = document.getElementById("job-rows");
  var status = document.getElementById("refresh-status");
  if (!body) return;
  var PERIOD = 5000;
  function schedule() {
    if (body.getAttribute("data-refresh") === "1") window.setTimeout(refresh, PERIOD);
  }
  function refresh() {
    if (document.hidden) { schedule(); return; }
    var url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    fetch(url.toString(), { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (!response.ok || response.redirected) throw new Error("HTTP " + response.status);
        var active = response.headers.get("X-Chidori-Active") === "1";
        return response.text().then(function (html) {
          body.innerHTML = html;  // rendered and escaped by the server's templates
          body.setAttribute("data-refresh", active ? "1" : "0");
          if (status) status.textContent = active
            ? "Some jobs are still active: this list refreshes every 5 seconds."
            : "All listed jobs have finished.";
        });
      })
      .catch(function () {
        if (status) status.textContent = "Could not refresh the list; retrying.";
      })
      .then(schedule);
  }
  schedule();
})();
