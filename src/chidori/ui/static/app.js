// Small helpers for every page: confirm before dangerous forms, copy buttons (an input's
// value or an element's text).
"use strict";
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form instanceof HTMLFormElement ? form.getAttribute("data-confirm") : null;
  if (question && !window.confirm(question)) event.preventDefault();
});
document.addEventListener("click", function (event) {
  var button = event.target instanceof Element ? event.target.closest("button[data-copy]") : null;
  if (!button) return;
  var source = document.getElementById(button.getAttribute("data-copy"));
  if (!source) return;
  // An input's value, or an element's text (a <code> block), selected so it shows.
  var text;
  if ("select" in source && "value" in source) { source.select(); text = source.value; }
  else {
    var range = document.createRange();
    range.selectNodeContents(source);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    text = source.textContent;
  }
  var done = function () { button.textContent = "Copied"; };
  if (navigator.clipboard) navigator.clipboard.writeText(text).then(done, function () {});
  else { document.execCommand("copy"); done(); }
});
// Running jobs' elapsed time ticks here, from what the server said when it rendered the
// element (`data-elapsed` seconds), so the client's clock does not need to match the server's.
(function () {
  var seen = new WeakMap();
  function format(seconds) {
    if (seconds < 60) return seconds.toFixed(1) + " s";
    var whole = Math.round(seconds);
    var hours = Math.floor(whole / 3600), minutes = Math.floor((whole % 3600) / 60), secs = whole % 60;
    var two = function (n) { return (n < 10 ? "0" : "") + n; };
    return hours ? hours + " h " + two(minutes) + " m" : minutes + " m " + two(secs) + " s";
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll(".elapsed[data-elapsed]").forEach(function (element) {
      var start = seen.get(element);
      if (start === undefined) {
        start = now - parseFloat(element.getAttribute("data-elapsed")) * 1000;
        seen.set(element, start);
      }
      var text = format(Math.max(0, now - start) / 1000);
      if (element.textContent !== text) element.textContent = text;
    });
  }
  tick();
  window.setInterval(tick, 1000);
})();
