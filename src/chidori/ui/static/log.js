// Driver log viewer: the log from its start with line numbers and permalinks (#L123), opened
// at the first error of a failed job; search with previous/next and "3 of 17", only matching
// lines, a level filter (INFO/WARN/ERROR), wrap; follow live (a streamed fetch of the API with
// the session cookie, or polling by offset on share links). Paths of the job's uploaded files
// are shown as the names the user submitted (data-files: the spec's file references).
"use strict";
(function () {
  var viewer = document.getElementById("log-viewer");
  var pre = document.getElementById("log-text");
  if (!viewer || !pre) return;
  var src = viewer.getAttribute("data-src") || viewer.getAttribute("data-log-url");
  var mode = viewer.getAttribute("data-mode");
  var active = viewer.getAttribute("data-active") === "1";
  var failed = viewer.getAttribute("data-failed") === "1";
  var follow = document.getElementById("log-follow");
  var search = document.getElementById("log-search");
  var nextButton = document.getElementById("log-next");
  var prevButton = document.getElementById("log-prev");
  var count = document.getElementById("log-count");
  var only = document.getElementById("log-only");
  var level = document.getElementById("log-level");
  var wrap = document.getElementById("log-wrap");
  var permalink = document.getElementById("log-permalink");
  var status = document.getElementById("log-status");
  var MAX_LOAD = 4 * 1048576;  // bytes read from the start; beyond, the download has it all
  var MAX_MARKS = 5000;
  var RANK = { debug: 0, info: 1, warn: 2, error: 3 };
  var ERROR_RE = /\b(ERROR|FATAL|CRITICAL|SEVERE)\b|^Traceback \(most recent call last\)|^\s*(Caused by: )?[\w.$]*(Error|Exception|Exit|Interrupt)\b(:|$)/;
  var WARN_RE = /\bWARN(ING)?\b/;
  var INFO_RE = /\bINFO\b/;
  var DEBUG_RE = /\b(DEBUG|TRACE)\b/;

  var raw = "";        // the text read so far (possibly ending in a partial line)
  var lines = [];      // {text, level}, for the complete lines and the partial last one
  var offset = 0, size = 0, gone = false, truncated = false;
  var controller = null, generation = 0, renderTimer = null;
  var matches = [];    // line numbers (1-based) with a match, in order
  var current = -1;    // index into matches
  var targetLine = 0;

  function say(message) { if (status) status.textContent = message; }

  function url(params) {
    var u = new URL(src, window.location.href);
    Object.keys(params).forEach(function (k) { u.searchParams.set(k, params[k]); });
    return u.pathname + u.search;
  }

  // The job's uploads (upload://<sha256>/<name>) and the pattern of their stored paths.
  var uploads = [];
  try {
    JSON.parse(viewer.getAttribute("data-files") || "[]").forEach(function (ref) {
      var m = /^upload:\/\/([0-9a-f]{64})\/([A-Za-z0-9._\-]{1,255})(#.*)?$/.exec(ref);
      if (!m) return;
      var name = m[2].replace(/[.\-]/g, "\\$&");
      uploads.push({ re: new RegExp("(?:[^\\s\"'(),:]*/)?" + m[1] + "/" + name + "\\b", "g"), name: m[2] });
    });
  } catch (e) { uploads = []; }
  function submitted(text) {
    for (var i = 0; i < uploads.length; i++) text = text.replace(uploads[i].re, uploads[i].name);
    return text;
  }

  function classify(text, previous) {
    if (ERROR_RE.test(text)) return "error";
    if (WARN_RE.test(text)) return "warn";
    if (INFO_RE.test(text)) return "info";
    if (DEBUG_RE.test(text)) return "debug";
    // A continuation (a traceback's frames, a Java stack's "\tat"): the level of its start.
    if (/^\s/.test(text) && previous) return previous;
    return "info";
  }

  function parse() {
    var parts = raw.split("\n");
    if (parts.length && parts[parts.length - 1] === "") parts.pop();
    var result = [], previous = null;
    for (var i = 0; i < parts.length; i++) {
      var text = submitted(parts[i].replace(/\r$/, ""));
      var lvl = classify(text, previous);
      result.push({ text: text, level: lvl });
      previous = lvl;
    }
    lines = result;
  }

  function atBottom() { return pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40; }

  function visibleByLevel(line) {
    var floor = level && level.value ? RANK[level.value] : -1;
    return RANK[line.level] >= floor;
  }

  function render() {
    renderTimer = null;
    var keepBottom = atBottom() && !targetLine;
    var needle = search ? search.value : "";
    var lower = needle.toLowerCase();
    var onlyMatching = only && only.checked && needle;
    var fragment = document.createDocumentFragment();
    var marks = 0;
    matches = [];
    for (var i = 0; i < lines.length; i++) {
      var line = lines[i], number = i + 1;
      var hit = needle ? line.text.toLowerCase().indexOf(lower) !== -1 : false;
      if (hit) matches.push(number);
      var el = document.createElement("span");
      el.className = "line lvl-" + line.level;
      el.id = "L" + number;
      if (!visibleByLevel(line) || (onlyMatching && !hit)) el.className += " hide";
      if (number === targetLine) el.className += " target";
      var link = document.createElement("a");
      link.className = "ln";
      link.href = "#L" + number;
      link.tabIndex = -1;
      link.textContent = String(number);
      el.appendChild(link);
      if (hit && marks < MAX_MARKS) {
        var haystack = line.text.toLowerCase(), from = 0, at;
        while ((at = haystack.indexOf(lower, from)) !== -1) {
          el.appendChild(document.createTextNode(line.text.slice(from, at)));
          var mark = document.createElement("mark");
          mark.textContent = line.text.slice(at, at + needle.length);
          el.appendChild(mark);
          from = at + needle.length;
          marks += 1;
        }
        el.appendChild(document.createTextNode(line.text.slice(from) + "\n"));
      } else {
        el.appendChild(document.createTextNode(line.text + "\n"));
      }
      fragment.appendChild(el);
    }
    while (pre.firstChild) pre.removeChild(pre.firstChild);
    pre.appendChild(fragment);
    if (current >= matches.length) current = matches.length - 1;
    showCount();
    if (current >= 0) highlight(false);
    if (keepBottom) pre.scrollTop = pre.scrollHeight;
  }

  function scheduleRender() { if (!renderTimer) renderTimer = window.setTimeout(render, 250); }

  function showCount() {
    if (!count) return;
    if (!search || !search.value) { count.textContent = ""; return; }
    if (!matches.length) { count.textContent = "No match"; return; }
    count.textContent = (current >= 0 ? (current + 1) + " of " : "") + matches.length +
      (current >= 0 ? "" : (matches.length === 1 ? " matching line" : " matching lines"));
  }

  function setPermalink(number) {
    if (!permalink) return;
    permalink.hidden = !number;
    if (number) {
      permalink.href = "#L" + number;
      permalink.textContent = "Link to line " + number;
    }
  }

  function scrollToLine(number) {
    var el = document.getElementById("L" + number);
    if (!el) return null;
    el.scrollIntoView({ block: "center" });  // the log box, and the page to the log
    return el;
  }

  function markTarget(number) {
    var old = pre.querySelector(".line.target");
    if (old) old.classList.remove("target");
    targetLine = number;
    var el = scrollToLine(number);
    if (el) el.classList.add("target");
    setPermalink(number);
    return el;
  }

  function highlight(move) {
    var previous = pre.querySelector("mark.current");
    if (previous) previous.classList.remove("current");
    if (current < 0 || current >= matches.length) return;
    var number = matches[current];
    var el = document.getElementById("L" + number);
    if (!el) return;
    var mark = el.querySelector("mark");
    if (mark) mark.classList.add("current");
    if (move) { scrollToLine(number); setPermalink(number); }
  }

  function step(by) {
    if (!matches.length) { showCount(); return; }
    current = current < 0 ? (by > 0 ? 0 : matches.length - 1) : (current + by + matches.length) % matches.length;
    highlight(true);
    showCount();
  }

  function fromHash() {
    var m = /^#L(\d+)$/.exec(window.location.hash);
    return m ? parseInt(m[1], 10) : 0;
  }

  function openAt() {
    var wanted = fromHash();
    if (wanted && wanted <= lines.length) {
      markTarget(wanted);
      say("Line " + wanted + " of " + lines.length + ".");
      return;
    }
    if (failed) {
      for (var i = 0; i < lines.length; i++) {
        if (lines[i].level === "error" && ERROR_RE.test(lines[i].text)) {
          markTarget(i + 1);
          say("Opened at the first error, line " + (i + 1) + ".");
          return;
        }
      }
    }
    pre.scrollTop = pre.scrollHeight;
  }

  function append(chunk) {
    if (!chunk) return;
    raw += chunk;
    parse();
    scheduleRender();
  }

  function stop() {
    generation += 1;
    if (controller) { controller.abort(); controller = null; }
  }

  function finished(state) {
    return state && ["SUCCEEDED", "FAILED", "CANCELLED"].indexOf(state) !== -1;
  }

  function readPage(mine, from) {
    return fetch(url({ offset: from }), { credentials: "same-origin" }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      offset = parseInt(response.headers.get("X-Log-Offset") || "0", 10);
      size = parseInt(response.headers.get("X-Log-Size") || "0", 10);
      gone = response.headers.get("X-Log-Gone") === "true";
      if (finished(response.headers.get("X-Job-State"))) active = false;
      return response.text();
    }).then(function (body) {
      if (mine !== generation) return null;
      raw += body;
      if (offset < size && body && offset < MAX_LOAD) return readPage(mine, offset);
      truncated = offset < size;
      return null;
    });
  }

  function load() {
    stop();
    var mine = generation;
    raw = "";
    say("Loading…");
    return readPage(mine, 0).then(function () {
      if (mine !== generation) return;
      parse();
      render();
      openAt();
      if (gone) say("This log is no longer kept: its retention period has passed, or its host was lost before the log was copied.");
      else if (truncated) say("Showing the first " + Math.round(offset / 1048576) + " MiB of " + Math.round(size / 1048576) + " MiB: download the full log for the rest.");
      else if (!lines.length) say("The log is empty (the driver may not have started yet).");
      else if (!targetLine) say(lines.length + " lines.");
      if (follow && follow.checked && active && !truncated) startFollow();
    }).catch(function (error) { say("Could not load the log: " + error.message); });
  }

  function ended() {
    active = false;
    if (follow) follow.checked = false;
    say("The job has ended: the log is complete (" + lines.length + " lines).");
  }

  function startFollow() {
    stop();
    var mine = generation;
    if (mode === "stream") {
      controller = new AbortController();
      var decoder = new TextDecoder();
      fetch(url({ follow: "true", offset: offset }), { credentials: "same-origin", signal: controller.signal })
        .then(function (response) {
          if (!response.ok || !response.body) throw new Error("HTTP " + response.status);
          var reader = response.body.getReader();
          say("Following…");
          function pump() {
            return reader.read().then(function (part) {
              if (mine !== generation) return;
              if (part.done) { append(decoder.decode()); render(); ended(); return; }
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
        fetch(url({ offset: offset }), { credentials: "same-origin" }).then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          offset = parseInt(response.headers.get("X-Log-Offset") || String(offset), 10);
          var state = response.headers.get("X-Job-State");
          return response.text().then(function (body) {
            if (mine !== generation) return;
            append(body);
            if (finished(state) && !body) { render(); ended(); return; }
            window.setTimeout(poll, 2000);
          });
        }).catch(function (error) { say("Following stopped: " + error.message); });
      };
      say("Following…");
      poll();
    }
  }

  if (follow) follow.addEventListener("change", function () {
    if (follow.checked) {
      if (active) startFollow();
      else { follow.checked = false; say("The job has ended: nothing more to follow."); }
    } else { stop(); say("Stopped following."); }
  });
  if (search) {
    var typing = null;
    search.addEventListener("input", function () {
      current = -1;
      window.clearTimeout(typing);
      typing = window.setTimeout(render, 120);
    });
    search.addEventListener("keydown", function (event) {
      if (event.key === "Enter") {
        event.preventDefault();
        if (renderTimer || typing) { window.clearTimeout(typing); typing = null; render(); }
        step(event.shiftKey ? -1 : 1);
      }
    });
  }
  if (nextButton) nextButton.addEventListener("click", function () { step(1); });
  if (prevButton) prevButton.addEventListener("click", function () { step(-1); });
  if (only) only.addEventListener("change", render);
  if (level) level.addEventListener("change", render);
  if (wrap) {
    var applyWrap = function () { pre.classList.toggle("nowrap", !wrap.checked); };
    wrap.addEventListener("change", applyWrap);
    applyWrap();
  }
  window.addEventListener("hashchange", function () {
    var wanted = fromHash();
    if (wanted) markTarget(wanted);
  });
  pre.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest("a.ln") : null;
    if (link) setPermalink(parseInt(link.textContent, 10));
  });
  load();
})();
