// The chat page. Model output and article text only ever reach the DOM as text nodes (no innerHTML anywhere).
"use strict";

const $ = (id) => document.getElementById(id);
const history = [];   // {role, content} turns sent to /v1/chat
let busy = false;

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function headers(json = true) {
  const h = json ? { "Content-Type": "application/json" } : {};
  const key = sessionStorage.getItem("qa-api-key");
  if (key) h["X-API-Key"] = key;
  return h;
}

async function errorMessage(resp) {
  try {
    const body = await resp.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (_) { /* not JSON */ }
  return `${resp.status} ${resp.statusText || "error"}`;
}

async function api(path, opts = {}) {
  const resp = await fetch(path, { ...opts, headers: { ...headers(opts.body !== undefined), ...(opts.headers || {}) } });
  if (!resp.ok) throw new Error(await errorMessage(resp));
  return resp.status === 204 ? null : resp.json();
}

// ---- collections: every request names the picked one (none picked: the server's default) ----
function collection() { return $("collection").value || null; }

function inCollection(path) {
  const c = collection();
  return c ? `${path}${path.includes("?") ? "&" : "?"}collection=${encodeURIComponent(c)}` : path;
}

function withCollection(body) {
  const c = collection();
  return c ? { ...body, collection: c } : body;
}

async function refreshCollections() {
  const select = $("collection");
  try {
    const data = await api("/v1/collections");
    const saved = sessionStorage.getItem("qa-collection") || "";
    select.replaceChildren(...data.collections.map((c) => el("option", { value: c.default ? "" : c.name, text: `${c.name} (${c.documents})` })));
    select.value = data.collections.some((c) => !c.default && c.name === saved) ? saved : "";
  } catch (_) { /* an older server, or no access: the default collection only */ }
}

function switchCollection() {
  if (collection()) sessionStorage.setItem("qa-collection", collection()); else sessionStorage.removeItem("qa-collection");
  history.length = 0; $("log").replaceChildren(); $("passage").hidden = true;
  refreshDocs(); refreshSources();
}

// ---- health ----
async function pollHealth() {
  const status = $("status");
  try {
    const resp = await fetch("/healthz");
    if (resp.ok) { status.textContent = "ready"; status.className = "status ready"; return; }
    status.textContent = await errorMessage(resp);
    status.className = "status";
  } catch (_) {
    status.textContent = "server unreachable"; status.className = "status down";
  }
  setTimeout(pollHealth, 2000);
}

// ---- filters ----
const FILTER_FIELDS = ["f-source", "f-after", "f-before", "f-asof"];

function filters() {
  const f = {};
  if ($("f-source").value) f.source = $("f-source").value;
  if ($("f-after").value) f.published_after = $("f-after").value;
  if ($("f-before").value) f.published_before = $("f-before").value;
  return Object.keys(f).length ? f : null;
}

function asOf() {
  return $("f-asof").value || null;
}

function showFilterSummary() {
  const f = Object.assign({}, filters(), asOf() ? { "as of": asOf() } : {});
  $("filter-summary").textContent = Object.keys(f).length ? "· " + Object.entries(f).map(([k, v]) => `${k.replace("published_", "")}: ${v}`).join(", ") : "";
}

// ---- streaming chat ----
async function* sseEvents(resp) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}

function addMessage(role, text) {
  const li = el("li", { class: `msg ${role}` }, el("span", { class: "text", text }));
  $("log").append(li);
  li.scrollIntoView({ block: "end" });
  return li;
}

function renderAnswer(li, result) {
  li.classList.remove("streaming");
  li.replaceChildren();
  const byN = new Map(result.citations.map((c) => [c.n, c]));
  if (result.question && history.filter((m) => m.role === "user").length > 1) {
    li.append(el("span", { class: "rewritten", text: `Answered as: ${result.question}` }));
  }
  if (result.refused) {
    li.classList.add("refused");
    li.append(el("span", { class: "label", text: "Not in the archive" }));
  }
  const text = el("span", { class: "text" });
  // [n] and [n, m] markers become chips; anything else stays literal text
  const parts = result.answer.split(/(\[\d+(?:\s*,\s*\d+)*\])/);
  for (const part of parts) {
    const m = part.match(/^\[(.*)\]$/);
    if (m) {
      for (const n of m[1].split(",").map((x) => parseInt(x, 10))) {
        const c = byN.get(n);
        text.append(c ? chip(c) : document.createTextNode(`[${n}]`));
      }
    } else if (part) {
      text.append(document.createTextNode(part));
    }
  }
  li.append(text);
  if (result.citations.length) {
    const sources = el("span", { class: "sources" });
    for (const c of result.citations) {
      const day = c.published_at ? ` · ${c.published_at.slice(0, 10)}` : "";
      sources.append(el("span", { class: "source" }, chip(c), document.createTextNode(" " + c.title + (c.source ? ` · ${c.source}` : "") + day)));
    }
    li.append(sources);
  }
  const t = result.timings;
  const sure = result.confidence != null && !result.refused ? ` · confidence ${Math.round(result.confidence * 100)}%` : "";
  li.append(el("span", { class: "timing", text: `${(t.total_ms / 1000).toFixed(1)} s${sure}` + (t.first_token_ms ? ` · first token ${(t.first_token_ms / 1000).toFixed(1)} s` : "") }));
}

function chip(c) {
  const title = c.published_at ? `${c.title} (${c.published_at.slice(0, 10)})` : c.title;
  return el("button", { type: "button", class: "chip", "data-n": String(c.n), title, "aria-label": `Source ${c.n}: ${c.title}`, onclick: () => openPassage(c) }, String(c.n));
}

function safeHttpUrl(url) {
  try {
    const u = new URL(url);
    return u.protocol === "http:" || u.protocol === "https:" ? u.href : null;
  } catch (_) { return null; }
}

function openPassage(c) {
  $("passage-n").textContent = String(c.n);
  $("passage-title").textContent = c.title;
  $("passage-meta").textContent = [c.source, c.published_at && c.published_at.slice(0, 10), c.doc_id].filter(Boolean).join(" · ");
  const link = $("passage-link");
  link.replaceChildren();
  const href = c.url && safeHttpUrl(c.url);
  if (href) link.append(el("a", { href, target: "_blank", rel: "noopener noreferrer", text: href }));
  const box = $("passage-text");
  box.replaceChildren();
  const q = c.quote && c.quote.text ? c.text.indexOf(c.quote.text) : -1;
  if (q >= 0) {
    box.append(document.createTextNode(c.text.slice(0, q)), el("mark", { text: c.quote.text }), document.createTextNode(c.text.slice(q + c.quote.text.length)));
  } else {
    box.append(document.createTextNode(c.text));
  }
  $("passage").hidden = false;
  const mark = box.querySelector("mark");
  if (mark) mark.scrollIntoView({ block: "nearest" });
}

async function ask(question) {
  busy = true;
  $("send").disabled = true;
  $("passage").hidden = true;
  addMessage("user", question);
  history.push({ role: "user", content: question });
  const li = addMessage("assistant streaming", "");
  const textNode = li.querySelector(".text");
  try {
    const resp = await fetch("/v1/chat", {
      method: "POST", headers: headers(),
      body: JSON.stringify(withCollection({ messages: history.slice(-12), filters: filters(), as_of: asOf(), stream: true, mode: $("extractive").checked ? "extractive" : "generative" })),
    });
    if (!resp.ok) throw new Error(await errorMessage(resp));
    let result = null;
    for await (const ev of sseEvents(resp)) {
      if (ev.event === "token") { textNode.textContent += ev.data.text; li.scrollIntoView({ block: "end" }); }
      else if (ev.event === "retry") textNode.textContent = "";
      else if (ev.event === "done") result = ev.data;
      else if (ev.event === "error") throw new Error(ev.data.error ? ev.data.error.message : "the answer failed");
    }
    if (!result) throw new Error("the answer stream ended early");
    renderAnswer(li, result);
    history.push({ role: "assistant", content: result.answer });
  } catch (err) {
    history.pop();
    li.className = "msg error";
    li.replaceChildren(el("span", { class: "text", text: `Could not answer: ${err.message}` }));
  } finally {
    busy = false;
    $("send").disabled = false;
  }
}

// ---- documents ----
async function refreshDocs() {
  const list = $("doc-list");
  try {
    const data = await api(inCollection("/v1/documents?limit=500"));
    const chunks = data.documents.reduce((a, d) => a + d.chunks, 0);
    $("doc-count").textContent = `${data.total} documents · ${chunks} chunks`;
    list.replaceChildren(...data.documents.map(docItem));
    const sources = [...new Set(data.documents.map((d) => d.source).filter(Boolean))].sort();
    const select = $("f-source");
    const current = select.value;
    select.replaceChildren(el("option", { value: "", text: "any" }), ...sources.map((s) => el("option", { value: s, text: s })));
    select.value = sources.includes(current) ? current : "";
  } catch (err) {
    $("doc-count").textContent = "";
    list.replaceChildren(el("li", { class: "meta", text: `Could not list documents: ${err.message}` }));
  }
}

// a destructive button asks twice: the first click turns it into "confirm" for four seconds
function twoStepButton(label, confirmLabel, ariaLabel, action) {
  const button = el("button", { type: "button", class: "ghost small", text: label, "aria-label": ariaLabel });
  button.addEventListener("click", async () => {
    if (!button.classList.contains("confirm")) {
      button.classList.add("confirm"); button.textContent = confirmLabel;
      setTimeout(() => { button.classList.remove("confirm"); button.textContent = label; }, 4000);
      return;
    }
    button.disabled = true;
    await action();
  });
  return button;
}

function docItem(d) {
  const del = twoStepButton("Delete", "Confirm", `Delete ${d.title}`, async () => {
    try { await api(inCollection(`/v1/documents/${encodeURIComponent(d.doc_id)}`), { method: "DELETE" }); showReport(`Deleted ${d.title}`); }
    catch (err) { showReport(`Delete failed: ${err.message}`, true); }
    refreshDocs();
  });
  const meta = [d.source, d.published_at && d.published_at.slice(0, 10), `${d.chunks} chunks`].filter(Boolean).join(" · ");
  return el("li", { "data-doc": d.doc_id }, el("span", { class: "title", text: d.title }), el("span", { class: "meta", text: meta }), del);
}

function showReport(text, bad = false) {
  const box = $("ingest-report");
  box.hidden = false;
  box.className = bad ? "report bad" : "report";
  box.textContent = text;
}

function describeReport(r) {
  const lines = [`added ${r.added} · updated ${r.updated} · unchanged ${r.unchanged} · failed ${r.failed} · ${r.chunks_written} chunks written`];
  for (const item of r.items.filter((i) => i.status === "failed")) lines.push(`✗ ${item.origin}: ${item.error}`);
  return lines.join("\n");
}

function upload(files) {
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  const bar = $("upload-progress");
  bar.hidden = false; bar.value = 0;
  showReport(`Uploading ${files.length} file(s)…`);
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", inCollection("/v1/documents/upload"));
    for (const [k, v] of Object.entries(headers(false))) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = Math.round((100 * e.loaded) / e.total); };
    xhr.upload.onload = () => showReport("Uploaded; ingesting…");
    xhr.onload = () => {
      bar.hidden = true;
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      if (xhr.status === 200 && body) showReport(describeReport(body), body.failed > 0);
      else showReport(`Upload failed: ${body && body.error ? body.error.message : xhr.status}`, true);
      resolve();
    };
    xhr.onerror = () => { bar.hidden = true; showReport("Upload failed: network error", true); resolve(); };
    xhr.send(form);
  });
}

// ---- sources ----
async function refreshSources() {
  const list = $("source-list");
  try {
    const data = await api(inCollection("/v1/sources"));
    $("source-count").textContent = data.sources.length ? `(${data.sources.length})` : "";
    list.replaceChildren(...data.sources.map(sourceItem));
  } catch (err) {
    list.replaceChildren(el("li", { class: "meta", text: `Could not list sources: ${err.message}` }));
  }
}

function sourceItem(s) {
  const when = s.last_fetched_at ? s.last_fetched_at.slice(0, 16).replace("T", " ") : "never";
  const every = s.refresh_minutes ? `every ${s.refresh_minutes} min` : "on demand";
  const meta = [s.kind || "?", `${s.documents} documents`, every, `fetched ${when}`].join(" · ");
  const status = el("span", { class: s.failures ? "meta bad" : "meta", text: s.last_status || "not fetched yet" });
  const refresh = el("button", { type: "button", class: "ghost small", text: "Refresh", "aria-label": `Refresh ${s.url}` });
  refresh.addEventListener("click", async () => {
    refresh.disabled = true;
    try {
      const r = await api(inCollection(`/v1/sources/${encodeURIComponent(s.id)}/refresh`), { method: "POST" });
      showReport(describeReport(r.report), r.report.failed > 0);
    } catch (err) { showReport(`Refresh failed: ${err.message}`, true); }
    refreshSources(); refreshDocs();
  });
  const remove = twoStepButton("Remove", "Confirm (documents stay)", `Remove ${s.url}`, async () => {
    try { await api(inCollection(`/v1/sources/${encodeURIComponent(s.id)}`), { method: "DELETE" }); showReport(`Stopped following ${s.url}`); }
    catch (err) { showReport(`Remove failed: ${err.message}`, true); }
    refreshSources();
  });
  return el("li", { "data-source": s.id }, el("span", { class: "title", text: s.url }), el("span", { class: "meta", text: meta }), status, refresh, remove);
}

async function addSource() {
  const url = $("s-url").value.trim();
  const minutes = Number($("s-minutes").value || "60");
  showReport(`Fetching ${url}…`);
  try {
    const r = await api("/v1/sources", { method: "POST", body: JSON.stringify(withCollection({ url, refresh_minutes: minutes })) });
    const lines = [`${r.kind || "?"}: ${r.last_status}`, describeReport(r.report), ...r.notes];
    showReport(lines.join("\n"), r.failures > 0 || r.report.failed > 0);
    $("s-url").value = "";
  } catch (err) { showReport(`Could not follow: ${err.message}`, true); }
  refreshSources(); refreshDocs();
}

// ---- wiring ----
function init() {
  $("ask").addEventListener("submit", (e) => {
    e.preventDefault();
    const q = $("question").value.trim();
    if (!q || busy) return;
    $("question").value = "";
    ask(q);
  });
  $("question").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("ask").requestSubmit(); }
  });
  for (const id of FILTER_FIELDS) $(id).addEventListener("change", showFilterSummary);
  $("f-clear").addEventListener("click", () => { for (const id of FILTER_FIELDS) $(id).value = ""; showFilterSummary(); });
  $("new-chat").addEventListener("click", () => { history.length = 0; $("log").replaceChildren(); $("passage").hidden = true; });
  $("close-passage").addEventListener("click", () => { $("passage").hidden = true; });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") $("passage").hidden = true; });
  const docs = $("docs");
  $("toggle-docs").addEventListener("click", () => { docs.classList.toggle("open"); $("toggle-docs").setAttribute("aria-expanded", String(docs.classList.contains("open"))); });
  $("close-docs").addEventListener("click", () => docs.classList.remove("open"));
  $("upload").addEventListener("submit", async (e) => {
    e.preventDefault();
    const files = $("files").files;
    if (!files.length) { showReport("Choose one or more files first.", true); return; }
    await upload(files);
    $("files").value = "";
    refreshDocs();
  });
  $("paste").addEventListener("submit", async (e) => {
    e.preventDefault();
    const doc = { text: $("p-text").value };
    if ($("p-title").value.trim()) doc.title = $("p-title").value.trim();
    if ($("p-source").value.trim()) doc.source = $("p-source").value.trim();
    if ($("p-date").value) doc.published_at = $("p-date").value;
    try {
      const r = await api("/v1/documents", { method: "POST", body: JSON.stringify(withCollection({ documents: [doc] })) });
      showReport(describeReport(r), r.failed > 0);
      $("paste").reset();
    } catch (err) { showReport(`Could not add: ${err.message}`, true); }
    refreshDocs();
  });
  $("add-source").addEventListener("submit", (e) => { e.preventDefault(); addSource(); });
  $("sources").addEventListener("toggle", () => { if ($("sources").open) refreshSources(); });
  const key = $("api-key");
  key.value = sessionStorage.getItem("qa-api-key") || "";
  key.addEventListener("change", () => {
    if (key.value) sessionStorage.setItem("qa-api-key", key.value); else sessionStorage.removeItem("qa-api-key");
    refreshCollections().then(() => { refreshDocs(); refreshSources(); });
  });
  $("collection").addEventListener("change", switchCollection);
  pollHealth();
  refreshCollections().then(() => { refreshDocs(); refreshSources(); });
}

document.addEventListener("DOMContentLoaded", init);
