// unmask serve: the single page. Plain JS, no library, no build step; every text from the server goes in via
// textContent (never innerHTML), images are fetched with the token and shown as blob: URLs.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const state = { token: sessionStorage.getItem("unmask-token") || "", result: null, selected: null, blobs: new Map() };

function authHeaders() {
  return state.token ? { Authorization: "Bearer " + state.token } : {};
}

function show(id, on) { $(id).hidden = !on; }

function showError(text) {
  const box = $("error");
  box.textContent = text;
  show("error", true);
}

function fmtBytes(n) {
  const one = (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1));
  if (n >= 1 << 30) return one(n / (1 << 30)) + " GB";
  if (n >= 1 << 20) return one(n / (1 << 20)) + " MB";
  if (n >= 1 << 10) return (n / (1 << 10)).toFixed(0) + " KB";
  return n + " bytes";
}

function pct(p) { return (100 * p).toFixed(1) + "%"; }

async function loadInfo() {
  try {
    const h = await (await fetch("/v1/health")).json();
    $("limits").textContent = "images and videos up to " + fmtBytes(h.limits.max_upload_bytes) + "; " +
      h.limits.frames + " frames sampled per video; the type is read from the file's content";
    if (h.auth_required && !state.token) show("token-box", true);
  } catch (e) {
    $("limits").textContent = "server not reachable";
  }
  const r = await fetch("/v1/model", { headers: authHeaders() });
  if (r.status === 401) {
    show("token-box", true);
    $("model-line").textContent = "this server needs an API token";
    return;
  }
  const m = await r.json();
  const parts = m.models.map((d) => {
    const cal = d.calibration ? "calibrated, T=" + Number(d.temperature).toFixed(2) : "not calibrated";
    return d.model_id + " (" + (d.backbone || d.arch) + (d.method ? ", " + d.method : "") + ", " + cal + ")";
  });
  $("model-line").textContent = (m.ensemble ? "ensemble of " + m.models.length + ": " : "model: ") + parts.join("; ") +
    (m.notes.length ? " — " + m.notes.join("; ") : "");
}

function upload(file) {
  show("error", false);
  show("result-card", false);
  $("result-card").dataset.status = "uploading";
  show("progress-box", true);
  const bar = $("progress");
  bar.value = 0;
  $("progress-label").textContent = "uploading " + file.name + " (" + fmtBytes(file.size) + ")…";
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/v1/detect");
  for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
  xhr.upload.onprogress = (ev) => {
    if (ev.lengthComputable) {
      bar.value = Math.round((100 * ev.loaded) / ev.total);
      bar.dataset.last = String(bar.value); // the last percentage reached (kept for tests and screen readers)
    }
  };
  xhr.upload.onload = () => {
    bar.removeAttribute("value"); // indeterminate while the server scores
    $("progress-label").textContent = "scoring " + file.name + "… (faces, model, heat maps)";
  };
  xhr.onerror = () => { show("progress-box", false); showError("the upload failed (connection lost)"); };
  xhr.onload = () => {
    show("progress-box", false);
    let body = null;
    try { body = JSON.parse(xhr.responseText); } catch (e) { /* not JSON */ }
    if (xhr.status === 200 && body) { render(body); return; }
    let msg = (body && body.detail) ? (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail)) :
      ("HTTP " + xhr.status);
    if (xhr.status === 429) msg += " (server busy; Retry-After " + (xhr.getResponseHeader("Retry-After") || "?") + " s)";
    if (xhr.status === 401) show("token-box", true);
    showError(file.name + ": " + msg);
    $("result-card").dataset.status = "error";
  };
  const form = new FormData();
  form.append("file", file, file.name);
  xhr.send(form);
}

async function imageURL(url) {
  if (state.blobs.has(url)) return state.blobs.get(url);
  const r = await fetch(url, { headers: authHeaders() });
  if (!r.ok) throw new Error("image " + r.status);
  const u = URL.createObjectURL(await r.blob());
  state.blobs.set(url, u);
  return u;
}

function clearBlobs() {
  for (const u of state.blobs.values()) URL.revokeObjectURL(u);
  state.blobs.clear();
}

function render(res) {
  clearBlobs();
  state.result = res;
  const v = $("verdict");
  v.textContent = res.verdict === "fake" ? "FAKE" : "REAL";
  v.className = "verdict " + res.verdict;
  $("probability").textContent = pct(res.fake_probability);
  $("threshold").textContent = pct(res.threshold);
  $("calibrated").textContent = res.calibrated ? "(calibrated probability)" :
    "(not calibrated: raw softmax " + (res.probability_raw != null ? pct(res.probability_raw) : "") + ")";
  const f = res.file;
  $("file-line").textContent = f.name + " — " + f.type + ", " + f.width + "×" + f.height + ", " + fmtBytes(f.bytes) +
    ", " + res.frames.length + (f.kind === "video" ? " sampled frames" : " image") + "; model " + res.model.id;
  const w = $("warnings");
  w.replaceChildren(...res.warnings.map((t) => { const li = document.createElement("li"); li.textContent = t; return li; }));
  const pm = $("per-model");
  if (res.per_model.length > 1) {
    pm.tBodies[0].replaceChildren(...res.per_model.map((m) => {
      const tr = document.createElement("tr");
      for (const c of [m.model_id, pct(m.probability), pct(m.threshold), m.temperature == null ? "-" : Number(m.temperature).toFixed(3)]) {
        const td = document.createElement("td"); td.textContent = c; tr.appendChild(td);
      }
      return tr;
    }));
    pm.hidden = false;
  } else {
    pm.hidden = true;
  }
  const t = res.timings;
  $("timings").textContent = "server time " + t.total.toFixed(2) + " s (upload " + t.upload.toFixed(2) + ", queue " +
    t.queue.toFixed(2) + ", decode " + t.decode.toFixed(2) + ", faces " + t.faces.toFixed(2) + ", model " +
    t.model.toFixed(2) + ", heat maps " + (t.heatmaps || 0).toFixed(2) + ")";
  drawPlot(res);
  drawThumbs(res);
  const withImages = res.frames.filter((fr) => fr.images);
  show("no-images", withImages.length === 0);
  show("frame-view", withImages.length > 0);
  if (withImages.length) {
    const worst = withImages.reduce((a, b) => ((b.score ?? -1) > (a.score ?? -1) ? b : a));
    selectFrame(worst.index);
  }
  show("result-card", true);
  $("result-card").dataset.status = "done";
}

function el(name, attrs, parent) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function drawPlot(res) {
  const svg = $("score-plot");
  svg.replaceChildren();
  const W = 640, H = 200, L = 40, R = 12, T = 10, B = 28;
  const x0 = L, x1 = W - R, y0 = H - B, y1 = T;
  const frames = res.frames;
  const idx = frames.map((fr) => fr.index);
  const lo = Math.min(...idx), hi = Math.max(...idx);
  const X = (i) => (hi === lo ? (x0 + x1) / 2 : x0 + ((i - lo) / (hi - lo)) * (x1 - x0));
  const Y = (p) => y0 - p * (y0 - y1);
  for (const g of [0, 0.25, 0.5, 0.75, 1]) {
    el("line", { x1: x0, x2: x1, y1: Y(g), y2: Y(g), class: "grid" }, svg);
    el("text", { x: x0 - 6, y: Y(g) + 4, "text-anchor": "end" }, svg).textContent = g.toFixed(2);
  }
  el("line", { x1: x0, x2: x0, y1: y0, y2: y1, class: "axis" }, svg);
  el("line", { x1: x0, x2: x1, y1: y0, y2: y0, class: "axis" }, svg);
  el("text", { x: (x0 + x1) / 2, y: H - 6, "text-anchor": "middle" }, svg).textContent =
    res.file.kind === "video" ? "frame index" : "image";
  el("text", { x: x0, y: H - 6 }, svg).textContent = String(lo);
  el("text", { x: x1, y: H - 6, "text-anchor": "end" }, svg).textContent = String(hi);
  el("line", { x1: x0, x2: x1, y1: Y(res.threshold), y2: Y(res.threshold), class: "thr" }, svg);
  const scored = frames.filter((fr) => fr.score != null);
  if (scored.length > 1) {
    el("polyline", { class: "line", points: scored.map((fr) => X(fr.index) + "," + Y(fr.score)).join(" ") }, svg);
  }
  for (const fr of scored) {
    const cls = fr.score > res.threshold ? "fake" : "real";
    const c = el("circle", { cx: X(fr.index), cy: Y(fr.score), r: 4, class: "pt " + cls, "data-index": fr.index }, svg);
    const tip = el("title", {}, c);
    tip.textContent = "frame " + fr.index + ": " + pct(fr.score);
    if (fr.images) {
      el("circle", { cx: X(fr.index), cy: Y(fr.score), r: 7, class: "ring", "data-ring": fr.index }, svg);
      c.addEventListener("click", () => selectFrame(fr.index));
    }
  }
}

function drawThumbs(res) {
  const box = $("thumbs");
  box.replaceChildren();
  for (const fr of res.frames.filter((f) => f.images)) {
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.index = fr.index;
    b.title = "frame " + fr.index + ": " + pct(fr.score);
    const img = document.createElement("img");
    img.alt = "frame " + fr.index;
    b.appendChild(img);
    b.addEventListener("click", () => selectFrame(fr.index));
    box.appendChild(b);
    imageURL(fr.images.heatmap || fr.images.frame).then((u) => { img.src = u; }).catch(() => {});
  }
}

async function selectFrame(index) {
  const res = state.result;
  const fr = res.frames.find((f) => f.index === index);
  if (!fr || !fr.images) return;
  state.selected = index;
  for (const b of $("thumbs").children) b.classList.toggle("sel", Number(b.dataset.index) === index);
  for (const r of $("score-plot").querySelectorAll(".ring")) r.classList.toggle("sel", Number(r.dataset.ring) === index);
  const heat = $("show-heat").checked && fr.images.heatmap;
  const img = $("frame-img");
  img.dataset.loaded = "";
  img.dataset.kind = heat ? "heatmap" : "frame";
  img.onload = () => { img.dataset.loaded = "1"; };
  img.src = await imageURL(heat ? fr.images.heatmap : fr.images.frame);
  const faces = fr.faces.map((f) => pct(f.score) + (f.counted ? "" : " (not counted)")).join(", ");
  $("frame-caption").textContent = (res.file.kind === "video" ? "frame " + index + ": " : "") + "score " + pct(fr.score) +
    "; faces: " + faces;
  drawBoxes(fr, !heat); // the heat-map image has its boxes drawn in; the plain frame gets them here
}

function drawBoxes(fr, on) {
  const svg = $("box-layer");
  svg.replaceChildren();
  if (!on) return;
  svg.setAttribute("viewBox", "0 0 " + state.result.file.width + " " + state.result.file.height);
  svg.setAttribute("preserveAspectRatio", "none");
  for (const f of fr.faces) {
    const [a, b, c, d] = f.box;
    const cls = !f.counted ? "other" : (f.score > state.result.threshold ? "fake" : "real");
    el("rect", { x: a, y: b, width: c - a, height: d - b, class: cls }, svg);
  }
}

function download() {
  const res = state.result;
  if (!res) return;
  const blob = new Blob([JSON.stringify(res, null, 1)], { type: "application/json" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = (res.file.name.replace(/\.[^.]*$/, "") || "result") + ".unmask.json";
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

function init() {
  const drop = $("drop");
  const input = $("file");
  input.addEventListener("change", () => { if (input.files.length) upload(input.files[0]); input.value = ""; });
  drop.addEventListener("click", (ev) => { if (ev.target === drop || ev.target.tagName === "P") input.click(); });
  drop.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") input.click(); });
  for (const t of ["dragenter", "dragover"]) {
    drop.addEventListener(t, (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  }
  for (const t of ["dragleave", "drop"]) {
    drop.addEventListener(t, (ev) => { ev.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (ev) => {
    const files = ev.dataTransfer && ev.dataTransfer.files;
    if (files && files.length) upload(files[0]);
  });
  $("show-heat").addEventListener("change", () => { if (state.selected != null) selectFrame(state.selected); });
  $("download").addEventListener("click", download);
  $("token-save").addEventListener("click", () => {
    state.token = $("token").value.trim();
    sessionStorage.setItem("unmask-token", state.token);
    show("token-box", false);
    loadInfo();
  });
  loadInfo();
}

document.addEventListener("DOMContentLoaded", init);
