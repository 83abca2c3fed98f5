// reporthubd console: loads the server-rendered page for this URL with the API token in a
// header, runs the confirmed actions, and follows live runs through server-sent events.
// The token lives in sessionStorage (this tab) and goes only into an Authorization header.
"use strict";
(() => {
  const KEY = "reporthubd.console.token";
  const main = document.getElementById("main");
  const toast = document.getElementById("toast");
  let live = null; // AbortController of the open event stream

  const token = () => sessionStorage.getItem(KEY) || "";
  const headers = (extra) => {
    const all = Object.assign({}, extra || {});
    if (token()) all.Authorization = "Bearer " + token();
    return all;
  };

  function say(text, bad) {
    toast.textContent = text;
    toast.className = "toast shown" + (bad ? " bad" : "");
    clearTimeout(say.timer);
    say.timer = setTimeout(() => { toast.className = "toast"; }, 8000);
  }

  function tokenState() {
    document.getElementById("token-state").textContent =
      token() ? "A token is set for this tab." : "No token set.";
    // With a token the field folds away (a phone keeps its screen for the page); Forget
    // brings it back.
    document.getElementById("token-form").classList.toggle("has-token", Boolean(token()));
    document.getElementById("token-set").hidden = !token();
  }

  function needToken(status) {
    const box = document.createElement("div");
    box.className = "notice";
    box.setAttribute("role", "alert");
    const h = document.createElement("h1");
    h.textContent = status === 401 ? "This daemon needs an API token" : "The token was refused";
    const p = document.createElement("p");
    p.textContent = "Paste a token from the daemon's control.token_file into the API token field " +
      "above and choose Use token. Every call of this page sends it as an Authorization header.";
    box.append(h, p);
    main.replaceChildren(box);
    document.getElementById("token-input").focus();
  }

  async function answerText(response) {
    try {
      const body = await response.json();
      return (body.message || "") + (body.error ? ": " + body.error : "");
    } catch (e) {
      return response.status + " " + response.statusText;
    }
  }

  async function load() {
    if (live) { live.abort(); live = null; }
    const page = location.pathname.replace(/^\/console\/?/, "");
    let response;
    try {
      response = await fetch("/api/console/view/" + page + location.search,
        { headers: headers(), credentials: "omit", cache: "no-store" });
    } catch (e) {
      main.textContent = "The daemon cannot be reached. Is it running?";
      return;
    }
    if (response.status === 401 || response.status === 403) { needToken(response.status); return; }
    if (!response.ok) {
      const p = document.createElement("p");
      p.className = "notice";
      p.setAttribute("role", "alert");
      p.textContent = await answerText(response);
      main.replaceChildren(p);
      return;
    }
    main.innerHTML = await response.text(); // server-rendered, escaped by its templates
    main.dataset.loaded = String(Date.now());
    follow();
  }

  function formBody(form) {
    const body = {};
    for (const field of form.elements) {
      if (!field.name) continue;
      if (field.hasAttribute("data-bool")) { body[field.name] = field.checked; continue; }
      const value = field.value.trim();
      if (value === "") continue;
      if (field.hasAttribute("data-json")) body[field.name] = JSON.parse(value);
      else if (field.hasAttribute("data-utc")) body[field.name] = value + ":00Z";
      else body[field.name] = value;
    }
    return body;
  }

  async function act(form) {
    let body;
    try { body = formBody(form); } catch (e) { say("The parameters are not valid JSON: " + e.message, true); return; }
    if (!window.confirm(form.dataset.confirm || "Go ahead?")) return;
    let response;
    try {
      response = await fetch(form.dataset.url, {
        method: form.dataset.method || "POST",
        headers: headers({ "Content-Type": "application/json" }),
        credentials: "omit",
        body: JSON.stringify(body),
      });
    } catch (e) { say("The daemon cannot be reached.", true); return; }
    if (response.status === 401) { say("Refused: this action needs the API token. Paste it above.", true); return; }
    const text = await answerText(response.clone());
    if (!response.ok) { say("Refused: " + text, true); return; }
    const answer = await response.json();
    say(answer.message || "done");
    const data = answer.data || {};
    if (form.dataset.after === "backfill") { watchBackfill(form, data.backfill_id || data.id); return; }
    if (form.dataset.after === "run" && data.execution_id) {
      history.pushState(null, "", "/console/runs/" + encodeURIComponent(data.execution_id));
    }
    await load();
  }

  // A backfill's progress: its record, read once a second until it has finished.
  async function watchBackfill(form, id) {
    const box = form.querySelector(".backfill-progress");
    if (!id) { box.textContent = "Nothing to run in that range."; return; }
    const bar = document.createElement("progress");
    const text = document.createElement("span");
    bar.setAttribute("aria-label", "backfill " + id);
    box.replaceChildren(bar, text);
    for (;;) {
      let state;
      try {
        const response = await fetch("/api/backfills/" + encodeURIComponent(id), { headers: headers(), credentials: "omit" });
        if (!response.ok) { text.textContent = await answerText(response); return; }
        state = (await response.json()).data;
      } catch (e) { text.textContent = "The daemon cannot be reached."; return; }
      bar.max = Math.max(state.total || 0, 1);
      bar.value = state.done || 0;
      text.textContent = " backfill " + id + ": " + (state.done || 0) + " of " + (state.total || 0) +
        " fires done, " + (state.failed || 0) + " failed, " + (state.running || 0) + " running · " + state.status;
      if (state.finished_at) { box.dataset.finished = state.status; return; }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  async function download(button) {
    const response = await fetch(button.dataset.download, { headers: headers(), credentials: "omit" });
    if (!response.ok) { say("Download refused: " + await answerText(response), true); return; }
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement("a");
    link.href = url;
    link.download = button.dataset.name || "report";
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 30000);
  }

  // Server-sent events read through fetch(), so that the token goes in a header.
  async function stream(url, onEvent, signal) {
    const response = await fetch(url, { headers: headers({ Accept: "text/event-stream" }), credentials: "omit", signal });
    if (!response.ok || !response.body) return false;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return true;
      buffer += value;
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const chunk = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let name = "message";
        let data = "";
        for (const line of chunk.split("\n")) {
          if (line.startsWith("event:")) name = line.slice(6).trim();
          else if (line.startsWith("data:")) data += line.slice(5).trim();
        }
        if (data && onEvent(name, JSON.parse(data)) === false) return true;
      }
    }
  }

  // A cell of a drawn table: role and data-label as the server's templates write them (a
  // narrow screen shows each row as labelled lines, console.css).
  function cell(row, content, label) {
    const td = document.createElement("td");
    td.setAttribute("role", "cell");
    if (label) td.dataset.label = label;
    if (content instanceof Node) td.append(content); else td.textContent = content;
    row.append(td);
    return td;
  }

  function tableRow() {
    const row = document.createElement("tr");
    row.setAttribute("role", "row");
    return row;
  }

  function badge(word) {
    const span = document.createElement("span");
    span.className = "badge s-" + word;
    span.textContent = word;
    return span;
  }

  function drawRuns(table, runs) {
    const named = table.querySelectorAll("thead th").length === 6;
    const body = document.createElement("tbody");
    body.setAttribute("role", "rowgroup");
    if (!runs.length) {
      const row = tableRow();
      row.className = "none";
      const td = cell(row, "Nothing is running.");
      td.colSpan = 6; td.className = "muted";
      body.append(row);
    }
    for (const run of runs) {
      const row = tableRow();
      const link = document.createElement("a");
      link.href = "/console/runs/" + encodeURIComponent(run.execution_id);
      const code = document.createElement("code");
      code.textContent = run.execution_id.slice(0, 8);
      link.append(code);
      cell(row, link, "Run");
      if (named) cell(row, run.report || String(run.config_id), "Report");
      cell(row, badge(run.status), "Status");
      cell(row, run.progress ? run.progress.phase : "—", "Phase");
      cell(row, run.progress ? String(run.progress.rows) : "—", "Rows");
      cell(row, run.node_id || "—", "Node").className = "opt";
      body.append(row);
    }
    table.querySelector("tbody").replaceWith(body);
  }

  function follow() {
    const watched = main.querySelector("[data-live-run]");
    const table = main.querySelector("[data-live-runs]");
    if (!table && !(watched && watched.dataset.terminal === "false")) return;
    const id = watched && watched.dataset.terminal === "false" ? watched.dataset.liveRun : "";
    live = new AbortController();
    const controller = live;
    const url = "/api/console/events" + (id ? "?execution_id=" + encodeURIComponent(id) : "");
    let runs = [];
    const showWatched = (state) => {
      const status = watched.querySelector("[data-field=status]");
      status.replaceChildren(badge(state.status));
      const phase = watched.querySelector("[data-field=phase]");
      const rows = watched.querySelector("[data-field=rows]");
      if (phase && state.progress) phase.textContent = state.progress.phase;
      if (rows && state.progress) rows.textContent = String(state.progress.rows);
    };
    // `runs`: a snapshot (first, and after each change); `lifecycle`: one transition as it
    // happens; `progress`: rows so far of this node's runs. Keep-alive comments carry no data.
    const onEvent = (name, data) => {
      if (name === "lifecycle") {
        main.dataset.liveEvents = String(Number(main.dataset.liveEvents || 0) + 1);
        if (id && data.execution_id === id) {
          showWatched({ status: data.new, progress: null });
          if (data.terminal) { controller.abort(); load(); return false; }
        }
        return true;
      }
      if (name === "progress") {
        for (const run of runs) if (data[run.execution_id]) run.progress = data[run.execution_id];
        if (table) drawRuns(table, runs);
        if (id && data[id]) showWatched({ status: watched.querySelector("[data-field=status]").textContent, progress: data[id] });
        return true;
      }
      if (name !== "runs") return true;
      runs = data.runs;
      if (table) drawRuns(table, runs);
      if (id && data.watched) {
        showWatched(data.watched);
        if (data.watched.terminal) { controller.abort(); load(); return false; }
      }
      return true;
    };
    const again = () => { if (!controller.signal.aborted) setTimeout(() => { if (!controller.signal.aborted) run(); }, 2000); };
    const run = () => stream(url, onEvent, controller.signal).then(again, again);
    run();
  }

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form.id === "token-form") {
      event.preventDefault();
      const input = document.getElementById("token-input");
      if (input.value.trim()) sessionStorage.setItem(KEY, input.value.trim());
      input.value = "";
      tokenState();
      load();
    } else if (form.classList.contains("action")) {
      event.preventDefault();
      act(form);
    }
  });
  document.addEventListener("click", (event) => {
    const target = event.target.closest("[data-download]");
    if (target) { event.preventDefault(); download(target); }
    if (event.target.id === "token-forget") { sessionStorage.removeItem(KEY); tokenState(); load(); }
  });
  window.addEventListener("popstate", load);
  tokenState();
  load();
})();
