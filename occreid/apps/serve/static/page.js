// The search page: no framework, no external file. Talks to the JSON API of `occreid serve`.
"use strict";

const PAGE = 48;
let galleryOffset = 0;
let galleryTotal = 0;
let imageSearch = false;
// Answers can come back out of order: only the latest request of each kind is shown.
const latest = { search: 0, gallery: 0 };

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) node.append(child);
  return node;
}

function trackUrl(kind, camera, track) {
  return `/api/${kind}?camera=${encodeURIComponent(camera)}&track=${encodeURIComponent(track)}`;
}

function span(seconds, first, last) {
  if (seconds && seconds[0] !== null && seconds[0] !== undefined) {
    return `${Number(seconds[0]).toFixed(1)}–${Number(seconds[1]).toFixed(1)} s`;
  }
  return first !== undefined ? `frames ${first}–${last}` : "";
}

function say(text, isError) {
  const message = $("message");
  message.textContent = text;
  message.className = isError ? "error" : "";
}

async function getJson(response) {
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function card(row, onClick, distance) {
  const hasTrack = row.camera !== undefined && row.track !== undefined;
  const attrs = { className: "card", tabIndex: 0 };
  if (hasTrack) {
    attrs["data-camera"] = row.camera;
    attrs["data-track"] = row.track;
  }
  const node = el("div", attrs);
  if (hasTrack) node.append(el("img", { src: trackUrl("thumbnail", row.camera, row.track), alt: "" }));
  const label = hasTrack ? `${row.camera} #${row.track}` : row.path;
  node.append(el("div", { className: "label" }, label));
  node.append(el("div", { className: "span" }, span(row.seconds, row.first_frame, row.last_frame)));
  if (distance !== undefined) node.append(el("div", { className: "distance" }, `d = ${distance.toFixed(4)}`));
  if (onClick) {
    node.addEventListener("click", () => onClick(row));
    node.addEventListener("keydown", (e) => { if (e.key === "Enter") onClick(row); });
  }
  return node;
}

function showResults(body) {
  const results = $("results");
  results.replaceChildren(...body.results.map((r) => card(r, showCrops, r.distance)));
  results.setAttribute("data-count", String(body.results.length));
  $("crops").hidden = true;
  say(body.results.length ? `${body.results.length} tracks, nearest first` : "no results");
}

// A CNN's response maps of the query and the top results, or an OGFR model's predicted occlusion pattern.
function explainFigure(body, caption) {
  if (body.kind === "cnn") {
    return el("figure", {}, el("img", { src: body.map, alt: `response map of ${caption}` }),
      el("figcaption", {}, caption));
  }
  const bars = body.pattern.map((p) => el("div", { className: "bar" },
    el("span", { className: "fill", style: `width: ${(100 * p.weight).toFixed(1)}%` }),
    `${p.pattern} ${(100 * p.weight).toFixed(1)}%`));
  return el("figure", { className: "pattern" }, ...bars, el("figcaption", {}, caption));
}

async function explain(queryBody, results, mine) {
  const panel = $("explain");
  panel.hidden = true;
  try {
    const first = await getJson(await queryBody());
    if (!first.kind) return;
    const figures = [explainFigure(first, "query")];
    if (first.kind === "cnn") {
      for (const r of results.filter((r) => r.camera !== undefined).slice(0, 5)) {
        const body = await getJson(await fetch(trackUrl("explain", r.camera, r.track)));
        figures.push(explainFigure(body, `${r.camera} #${r.track}`));
      }
    }
    if (mine !== latest.search) return;  // a newer search is under way
    $("explain-title").textContent = first.kind === "cnn"
      ? "Response maps (channel mean of the feature map)" : "Predicted occlusion pattern of the query";
    $("explain-list").replaceChildren(...figures);
    panel.hidden = false;
  } catch (err) {
    if (mine === latest.search) say(err.message, true);
  }
}

async function searchTrack(camera, track) {
  const mine = ++latest.search;
  const params = new URLSearchParams({ camera, track });
  history.replaceState(null, "", `/?${params}`);
  $("query").replaceChildren(card({ camera, track }, null));
  const same = $("same-camera").checked ? "&include_same_camera=true" : "";
  say("searching…");
  try {
    const body = await getJson(await fetch(`/api/search?${params}${same}`));
    if (mine !== latest.search) return;
    showResults(body);
    explain(() => fetch(trackUrl("explain", camera, track)), body.results, mine);
  } catch (err) {
    if (mine !== latest.search) return;
    $("results").replaceChildren();
    say(err.message, true);
  }
}

async function searchImage(file) {
  if (!imageSearch) return say("this server has no model for image queries (start it with --checkpoint)", true);
  const mine = ++latest.search;
  history.replaceState(null, "", "/");
  $("query").replaceChildren(el("img", { src: URL.createObjectURL(file), alt: "query", className: "query" }));
  const form = new FormData();
  form.append("image", file);
  say("searching…");
  try {
    const body = await getJson(await fetch("/api/search", { method: "POST", body: form }));
    if (mine !== latest.search) return;
    showResults(body);
    explain(() => fetch("/api/explain", { method: "POST", body: form }), body.results, mine);
  } catch (err) {
    if (mine !== latest.search) return;
    $("results").replaceChildren();
    say(err.message, true);
  }
}

async function showCrops(row) {
  if (row.camera === undefined) return;
  const panel = $("crops");
  try {
    const body = await getJson(await fetch(trackUrl("crops", row.camera, row.track)));
    $("crops-title").textContent = `Crops of ${row.camera} #${row.track} (${span(row.seconds, row.first_frame, row.last_frame)})`;
    $("crops-list").replaceChildren(...body.crops.map((src) => el("img", { src, alt: "crop" })));
    panel.hidden = false;
    panel.scrollIntoView({ block: "nearest" });
  } catch (err) {
    say(err.message, true);
  }
}

async function loadGallery(offset) {
  const mine = ++latest.gallery;
  galleryOffset = offset;
  try {
    const body = await getJson(await fetch(`/api/tracks?offset=${offset}&limit=${PAGE}`));
    if (mine !== latest.gallery) return;
    galleryTotal = body.total;
    $("gallery").replaceChildren(...body.tracks.map((r) => card(r, (t) => searchTrack(t.camera, t.track))));
    $("gallery-count").textContent = `(${body.total} tracks)`;
    const last = Math.min(offset + body.tracks.length, body.total);
    $("page-label").textContent = body.total ? `${offset + 1}–${last} of ${body.total}` : "empty";
    $("prev").disabled = offset === 0;
    $("next").disabled = last >= body.total;
  } catch (err) {
    say(err.message, true);
  }
}

async function loadInfo() {
  const info = await getJson(await fetch("/api/info"));
  imageSearch = info.image_search;
  $("runs").replaceChildren(...info.runs.map((r) => el("a", { href: r.url }, `run: ${r.name}`)));
}

function wireDrop() {
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) searchImage(e.dataTransfer.files[0]);
  });
  $("pick").addEventListener("change", (e) => { if (e.target.files.length) searchImage(e.target.files[0]); });
  $("prev").addEventListener("click", () => loadGallery(Math.max(0, galleryOffset - PAGE)));
  $("next").addEventListener("click", () => {
    if (galleryOffset + PAGE < galleryTotal) loadGallery(galleryOffset + PAGE);
  });
  $("same-camera").addEventListener("change", () => {
    const params = new URLSearchParams(location.search);
    if (params.has("camera") && params.has("track")) searchTrack(params.get("camera"), params.get("track"));
  });
}

async function start() {
  wireDrop();
  await loadInfo().catch((err) => say(err.message, true));
  const params = new URLSearchParams(location.search);
  if (params.has("camera") && params.has("track")) searchTrack(params.get("camera"), params.get("track"));
  loadGallery(0);
}

start();
