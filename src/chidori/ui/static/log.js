// Driver log viewer: last N lines, follow live (a streamed fetch of the API with the session
// cookie, or polling by offset on share links), client-side search with highlighting.
"use strict";
(function () {
  var viewer = document.getElementById("log-viewer");
  var pre = document.getElementById("log-text");
  if (!viewer || !pre) return;
  var src = viewer.getAttribute("data-src");
  var mode = viewer.getAttribute("data-mode");
  var active = viewer.getAttribute("data-active") === "1";
  var lines = document.getElementById("log-lines");
  var follow = document.getElementById("log-follow");
  var search = document.getElementById("log-search");
  var nextButton = document.getElementById("log-next");
  var status = document.getElementById("log-status");
  var text = "";
  var offset = 0;
  var controller = null;
  var generation = 0;
  var current = -1;
  var MAX_MARKS = 5000;

  function say(message) { if (status) status.textContent = message; }

  function atBottom() { return pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40; }

  function render() {
    var keepBottom = atBottom();
    var needle = search ? search.value : "";
    while (pre.firstChild) pre.removeChild(pre.firstChild);
    if (!needle) {
      pre.appendChild(document.createTextNode(text));
    } else {
      var haystack = text.toLowerCase();
      var lower = needle.toLowerCase();
      var from = 0, count = 0, at;
      while ((at = haystack.indexOf(lower, from)) !== -1 && count < MAX_MARKS) {
        pre.appendChild(document.createTextNode(text.slice(from, at)));
        var mark = document.createElement("mark");
        mark.textContent = text.slice(at, at + needle.length);
        pre.appendChild(mark);
        from = at + needle.length;
        count += 1;
      }
      pre.appendChild(document.createTextNode(text.slice(from)));
      say(count === 0 ? "No match" : count + (count >= MAX_MARKS ? "+" : "") + " match" + (count === 1 ? "" : "es"));
    }
    if (keepBottom) pre.scrollTop = pre.scrollHeight;
  }

  function append(chunk) {
    if (!chunk) return;
    text += chunk;
    render();
  }

  function stop() {
    generation += 1;
    if (controller) { controller.abort(); controller = null; }
  }

  var size = 0, gone = false;

  function load() {
    stop();
    var mine = generation;
    var value = lines ? lines.value : "500";
    var url = value === "all" ? src + "?offset=0" : src + "?tail=" + encodeURIComponent(value);
    say("Loading…");
    return fetch(url, { credentials: "same-origin" }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      offset = parseInt(response.headers.get("X-Log-Offset") || "0", 10);
      size = parseInt(response.headers.get("X-Log-Size") || "0", 10);
      gone = response.headers.get("X-Log-Gone") === "true";
      var state = response.headers.get("X-Job-State");
      if (state && ["SUCCEEDED", "FAILED", "CANCELLED"].indexOf(state) !== -1) active = false;
      return response.text();
    }).then(function (body) {
      if (mine !== generation) return;
      text = body;
      render();
      pre.scrollTop = pre.scrollHeight;
      if (gone) say("This log is no longer kept: its retention period has passed, or its host was lost before the log was copied.");
      else if (text && offset < size) say("Showing the first " + Math.round(offset / 1048576) + " MiB of " + Math.round(size / 1048576) + " MiB: download the full log for the rest.");
      else if (!search || !search.value) say(text ? "" : "The log is empty (the driver may not have started yet).");
      if (follow && follow.checked && active) startFollow();
    }).catch(function (error) { say("Could not load the log: " + error.message); });
  }

  function startFollow() {
    stop();
    var mine = generation;
    if (mode === "stream") {
      controller = new AbortController();
      var decoder = new TextDecoder();
      fetch(src + "?follow=true&offset=" + offset, { credentials: "same-origin", signal: controller.signal })
        .then(function (response) {
          if (!response.ok || !response.body) throw new Error("HTTP " + response.status);
          var reader = response.body.getReader();
          say("Following…");
          function pump() {
            return reader.read().then(function (part) {
              if (mine !== generation) return;
              if (part.done) {
                append(decoder.decode());
                active = false;
                if (follow) follow.checked = false;
                say("The job has ended: the log is complete.");
                return;
              }
              offset += part.value.byteLength;
              append(decoder.decode(part.value, { stream: true }));
              return pump();
            });
          }
          return pump();
        })
        .catch(function (error) {
          if (error.name !== "AbortError") say("Following stopped: " + error.message);
        });
    } else {
      var poll = function () {
        if (mine !== generation) return;
        fetch(src + "?offset=" + offset, { credentials: "same-origin" }).then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          offset = parseInt(response.headers.get("X-Log-Offset") || String(offset), 10);
          var state = response.headers.get("X-Job-State");
          return response.text().then(function (body) {
            if (mine !== generation) return;
            append(body);
            if (state && ["SUCCEEDED", "FAILED", "CANCELLED"].indexOf(state) !== -1 && !body) {
              active = false;
              if (follow) follow.checked = false;
              say("The job has ended: the log is complete.");
              return;
            }
            window.setTimeout(poll, 2000);
          });
        }).catch(function (error) { say("Following stopped: " + error.message); });
      };
      say("Following…");
      poll();
    }
  }

  function jump() {
    var marks = pre.querySelectorAll("mark");
    if (!marks.length) return;
    if (current >= 0 && current < marks.length) marks[current].classList.remove("current");
    current = (current + 1) % marks.length;
    marks[current].classList.add("current");
    marks[current].scrollIntoView({ block: "center" });
  }

  if (lines) lines.addEventListener("change", load);
  if (follow) follow.addEventListener("change", function () {
    if (follow.checked) {
      if (active) startFollow();
      else { follow.checked = false; say("The job has ended: nothing more to follow."); }
    } else { stop(); say("Stopped following."); }
  });
  if (search) {
    search.addEventListener("input", function () { current = -1; render(); });
    search.addEventListener("keydown", function (event) {
      if (event.key === "Enter") { event.preventDefault(); jump(); }
    });
  }
  if (nextButton) nextButton.addEventListener("click", jump);
  load();
})();
