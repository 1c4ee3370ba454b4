/* Lightbox's built-in series viewer (app/web/viewer.py): no build step, no library.
 *
 * Data: the page's JSON script tag (#viewer-data) names the DICOMweb root, the study and its
 * image series. For a series, the script reads its metadata (WADO-RS /metadata), orders the
 * frames (along the slice normal when positions are known, else by InstanceNumber), and fetches
 * each frame:
 *   - greyscale images (1 sample, 8 or 16 bits): /frames/{n} as application/octet-stream in
 *     Explicit VR Little Endian (the server decodes compressed syntaxes), windowed here through
 *     a lookup table (PS3.3 C.11.2.1.2, linear; MONOCHROME1 inverted), so window/level is live;
 *   - anything else (colour, 1 or 32 bits): /frames/{n}/rendered as PNG, drawn as it comes.
 * Frames are prefetched outward from the current one, a few requests at a time, up to a memory
 * budget; scrolling then only draws (one draw per animation frame at most).
 *
 * Every DICOM value shown goes through textContent, never as markup.
 * performance.mark("lightbox:first-image") marks the first image drawn, and window.lightboxViewer
 * exposes the state the browser tests and the benchmark read (bench/viewer_bench.py).
 */
"use strict";

(() => {
  const dataTag = document.getElementById("viewer-data");
  if (!dataTag) return;
  const DATA = JSON.parse(dataTag.textContent);
  const NATIVE = "1.2.840.10008.1.2.1";
  const FRAME_ACCEPT = `application/octet-stream; transfer-syntax=${NATIVE}`;
  const PARALLEL = 6;                    // concurrent frame requests (HTTP/1.1: one host's share)
  const BUDGET = 768 * 1024 * 1024;      // bytes of decoded frames kept per series
  const CT_PRESETS = [
    ["Soft tissue", 40, 400], ["Lung", -600, 1500], ["Bone", 480, 2500], ["Brain", 40, 80],
    ["Subdural", 75, 215], ["Stroke", 32, 8], ["Mediastinum", 50, 350], ["Liver", 60, 160],
  ];

  const canvas = document.getElementById("image");
  const ctx = canvas.getContext("2d");
  const viewport = document.getElementById("viewport");
  const status = document.getElementById("viewer-status");
  const presetSelect = document.getElementById("preset");
  const overlays = {
    tl: document.getElementById("overlay-tl"), tr: document.getElementById("overlay-tr"),
    bl: document.getElementById("overlay-bl"), br: document.getElementById("overlay-br"),
  };
  const sliceFill = document.getElementById("slice-bar-fill");

  const state = {
    series: null,          // {uid, info, frames: [...]}
    index: 0,
    window: null,          // {center, width}
    invert: false,
    zoom: 1, panX: 0, panY: 0,
    tool: "window",
    cine: null,
    generation: 0,         // bumps on series change: stale fetches are dropped
  };
  const stats = { firstImageAt: null, drawn: 0, loaded: 0, errors: 0, lastDrawnIndex: -1 };
  const offscreen = document.createElement("canvas");
  const offctx = offscreen.getContext("2d");
  let lut = null, lutKey = "";
  let rgba = null, rgba32 = null;  // the windowed image, reused from draw to draw
  let drawPending = false;

  // --- DICOM JSON helpers ----------------------------------------------------------------
  function values(obj, tag) {
    const el = obj[tag];
    return el && Array.isArray(el.Value) ? el.Value : [];
  }
  function first(obj, tag, fallback) {
    const v = values(obj, tag);
    return v.length && v[0] !== null && v[0] !== undefined ? v[0] : fallback;
  }
  function num(obj, tag, fallback) {
    const v = Number(first(obj, tag, NaN));
    return Number.isFinite(v) ? v : fallback;
  }

  function frameUrl(s, f, rendered) {
    const base = `${DATA.dicomweb}/studies/${DATA.study}/series/${s.uid}/instances/${f.sop}`;
    return `${base}/frames/${f.frame}${rendered ? "/rendered" : ""}`;
  }

  // --- series loading --------------------------------------------------------------------
  function orderFrames(instances) {
    const withGeometry = instances.every((i) => i.position && i.orientation);
    if (withGeometry && instances.length > 1) {
      const o = instances[0].orientation;
      const n = [o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]];
      for (const i of instances) {
        i.order = i.position[0] * n[0] + i.position[1] * n[1] + i.position[2] * n[2];
      }
      instances.sort((a, b) => a.order - b.order || a.number - b.number);
    } else {
      instances.sort((a, b) => a.number - b.number || (a.sop < b.sop ? -1 : 1));
    }
    const frames = [];
    for (const i of instances) {
      for (let f = 1; f <= i.frames; f++) frames.push({ ...i, frame: f, image: null, pending: null });
    }
    return frames;
  }

  function instanceOf(obj) {
    const rows = num(obj, "00280010", 0), columns = num(obj, "00280011", 0);
    if (!rows || !columns) return null; // no pixel data: nothing to show
    const wc = values(obj, "00281050"), ww = values(obj, "00281051");
    const samples = num(obj, "00280002", 1);
    const bits = num(obj, "00280100", 16);
    const photometric = String(first(obj, "00280004", "MONOCHROME2"));
    const position = values(obj, "00200032").map(Number);
    const orientation = values(obj, "00200037").map(Number);
    return {
      sop: String(first(obj, "00080018", "")),
      number: num(obj, "00200013", 0),
      frames: Math.max(1, num(obj, "00280008", 1)),
      rows, columns, bits,
      signed: num(obj, "00280103", 0) === 1,
      slope: num(obj, "00281053", 1) || 1,
      intercept: num(obj, "00281052", 0),
      center: wc.length ? Number(wc[0]) : null,
      width: ww.length ? Number(ww[0]) : null,
      photometric,
      grey: samples === 1 && (bits === 8 || bits === 16) && photometric.startsWith("MONOCHROME"),
      position: position.length === 3 && position.every(Number.isFinite) ? position : null,
      orientation: orientation.length === 6 && orientation.every(Number.isFinite) ? orientation : null,
      location: first(obj, "00201041", null),
      thickness: first(obj, "00180050", null),
    };
  }

  async function loadSeries(uid) {
    const info = DATA.series.find((s) => s.uid === uid);
    if (!info) return;
    stopCine();
    const generation = ++state.generation;
    for (const b of document.querySelectorAll(".series-choice")) {
      b.setAttribute("aria-pressed", String(b.dataset.series === uid));
    }
    status.textContent = "Loading…";
    const url = `${DATA.dicomweb}/studies/${DATA.study}/series/${uid}/metadata`;
    let objects;
    try {
      // as the page's preload asks for it (no header of its own, credentials "include"), so
      // that the browser hands over the preloaded answer; DICOM JSON is the default
      const response = await fetch(url, { credentials: "include", priority: "high" });
      if (!response.ok) throw new Error(`metadata: HTTP ${response.status}`);
      objects = await response.json();
    } catch (error) {
      status.textContent = `The series could not be loaded (${error.message}).`;
      stats.errors++;
      return;
    }
    if (generation !== state.generation) return;
    const instances = objects.map(instanceOf).filter(Boolean);
    const frames = orderFrames(instances);
    state.series = { uid, info, frames, bytes: 0 };
    state.index = 0;
    state.window = null;
    state.zoom = 1; state.panX = 0; state.panY = 0;
    fillPresets(info.modality);
    if (!frames.length) {
      status.textContent = "This series has no image.";
      clear();
      return;
    }
    status.textContent = "";
    // the first image alone first (nothing competes with it), then the rest
    await request(state.index);
    if (generation !== state.generation) return;
    draw();  // now, not at the next animation frame: the first image is the one waited for
    prefetch();
  }

  // --- frames ----------------------------------------------------------------------------
  async function fetchGrey(s, f) {
    const response = await fetch(frameUrl(s, f, false), {
      headers: { Accept: FRAME_ACCEPT }, credentials: "same-origin",
      priority: f === s.frames[state.index] ? "high" : "auto",
    });
    if (!response.ok) throw new Error(`frame: HTTP ${response.status}`);
    const buffer = await response.arrayBuffer();
    const count = f.rows * f.columns;
    let pixels;
    if (f.bits === 8) {
      if (buffer.byteLength < count) throw new Error("frame: short pixel data");
      pixels = new Uint8Array(buffer, 0, count);
    } else {
      if (buffer.byteLength < count * 2) throw new Error("frame: short pixel data");
      pixels = f.signed ? new Int16Array(buffer, 0, count) : new Uint16Array(buffer, 0, count);
    }
    return { kind: "grey", pixels, bytes: buffer.byteLength };
  }

  async function fetchRendered(s, f) {
    const response = await fetch(frameUrl(s, f, true), {
      headers: { Accept: "image/png" }, credentials: "same-origin",
    });
    if (!response.ok) throw new Error(`rendered frame: HTTP ${response.status}`);
    const blob = await response.blob();
    const bitmap = await createImageBitmap(blob);
    return { kind: "bitmap", bitmap, bytes: bitmap.width * bitmap.height * 4 };
  }

  function request(i) {
    const s = state.series;
    const f = s && s.frames[i];
    if (!f) return Promise.resolve(null);
    if (f.image) return Promise.resolve(f.image);
    if (f.pending) return f.pending;
    const generation = state.generation;
    f.pending = (f.grey ? fetchGrey(s, f) : fetchRendered(s, f)).then((image) => {
      f.pending = null;
      if (generation !== state.generation) return null;
      f.image = image;
      s.bytes += image.bytes;
      stats.loaded++;
      if (i === state.index) scheduleDraw();
      updateStatus();
      return image;
    }, (error) => {
      f.pending = null;
      stats.errors++;
      if (i === state.index) status.textContent = `This image could not be loaded (${error.message}).`;
      return null;
    });
    return f.pending;
  }

  let prefetching = 0;
  function prefetch() {
    const s = state.series;
    if (!s) return;
    const n = s.frames.length;
    // outward from the current frame, ahead first (the usual scroll direction)
    for (let d = 0; d < n && prefetching < PARALLEL; d++) {
      for (const i of [state.index + d, state.index - d - 1]) {
        if (i < 0 || i >= n || prefetching >= PARALLEL) continue;
        const f = s.frames[i];
        if (f.image || f.pending) continue;
        if (s.bytes > BUDGET && !evictFor(i)) return;
        prefetching++;
        request(i).finally(() => { prefetching--; prefetch(); });
      }
    }
  }

  function evictFor(i) {
    // drop the frame farthest from the current one, if it is farther than i
    const s = state.series;
    let far = -1, farDistance = Math.abs(i - state.index);
    s.frames.forEach((f, j) => {
      const d = Math.abs(j - state.index);
      if (f.image && d > farDistance) { far = j; farDistance = d; }
    });
    if (far < 0) return false;
    const f = s.frames[far];
    s.bytes -= f.image.bytes;
    if (f.image.bitmap) f.image.bitmap.close();
    f.image = null;
    return true;
  }

  function updateStatus() {
    const s = state.series;
    if (!s) return;
    const have = s.frames.filter((f) => f.image).length;
    status.textContent = have < s.frames.length ? `Loaded ${have} of ${s.frames.length}` : "";
  }

  // --- drawing ---------------------------------------------------------------------------
  function defaultWindow(f, image) {
    if (f.center !== null && f.width !== null && f.width > 0) {
      return { center: f.center, width: f.width };
    }
    return autoWindow(f, image, 0);
  }

  function autoWindow(f, image, clip) {
    const p = image.pixels;
    let lo = Infinity, hi = -Infinity;
    if (!clip) {
      for (let k = 0; k < p.length; k++) { const v = p[k]; if (v < lo) lo = v; if (v > hi) hi = v; }
    } else {
      const sample = Array.from(p.filter((_, k) => k % 7 === 0)).sort((a, b) => a - b);
      lo = sample[Math.floor(sample.length * clip)];
      hi = sample[Math.floor(sample.length * (1 - clip)) - 1];
    }
    lo = lo * f.slope + f.intercept;
    hi = hi * f.slope + f.intercept;
    return { center: (lo + hi) / 2, width: Math.max(1, hi - lo) };
  }

  function buildLut(f) {
    const w = state.window;
    const invert = (f.photometric === "MONOCHROME1") !== state.invert;
    const key = `${f.bits}|${f.signed}|${f.slope}|${f.intercept}|${w.center}|${w.width}|${invert}`;
    if (key === lutKey) return lut;
    const size = f.bits === 8 ? 256 : 65536;
    const offset = f.signed ? (f.bits === 8 ? 128 : 32768) : 0;
    const table = new Uint32Array(size);
    const c = w.center - 0.5, width = Math.max(1, w.width) - 1 || 1;
    const low = c - width / 2, high = c + width / 2;
    for (let k = 0; k < size; k++) {
      const x = (k - offset) * f.slope + f.intercept;
      let g;
      if (x <= low) g = 0;
      else if (x > high) g = 255;
      else g = Math.round(((x - c) / width + 0.5) * 255);
      if (invert) g = 255 - g;
      table[k] = 0xff000000 | (g << 16) | (g << 8) | g;  // little-endian RGBA
    }
    lut = { table, offset };
    lutKey = key;
    return lut;
  }

  function scheduleDraw() {
    if (drawPending) return;
    drawPending = true;
    requestAnimationFrame(() => { drawPending = false; draw(); });
  }

  function fitCanvas() {
    const rect = viewport.getBoundingClientRect();
    const ratio = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(rect.width * ratio));
    const h = Math.max(1, Math.round(rect.height * ratio));
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
  }

  function clear() {
    fitCanvas();
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  }

  function draw() {
    const s = state.series;
    if (!s || !s.frames.length) return;
    const f = s.frames[state.index];
    updateOverlay(f);
    const image = f.image;
    if (!image) { request(state.index); return; }
    fitCanvas();
    let source;
    if (image.kind === "grey") {
      if (!state.window) state.window = defaultWindow(f, image);
      const { table, offset } = buildLut(f);
      if (offscreen.width !== f.columns || offscreen.height !== f.rows) {
        offscreen.width = f.columns; offscreen.height = f.rows;
      }
      if (!rgba || rgba.width !== f.columns || rgba.height !== f.rows) {
        rgba = new ImageData(f.columns, f.rows);
        rgba32 = new Uint32Array(rgba.data.buffer);
      }
      const out = rgba32;
      const p = image.pixels;
      const mask = f.bits === 8 ? 0xff : 0xffff;
      for (let k = 0; k < p.length; k++) out[k] = table[(p[k] + offset) & mask];
      offctx.putImageData(rgba, 0, 0);
      source = offscreen;
    } else {
      source = image.bitmap;
    }
    const sw = source.width, sh = source.height;
    const scale = Math.min(canvas.width / sw, canvas.height / sh) * state.zoom;
    const ratio = window.devicePixelRatio || 1;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.imageSmoothingEnabled = scale < 1;
    const dx = (canvas.width - sw * scale) / 2 + state.panX * ratio;
    const dy = (canvas.height - sh * scale) / 2 + state.panY * ratio;
    ctx.drawImage(source, dx, dy, sw * scale, sh * scale);
    stats.drawn++;
    stats.lastDrawnIndex = state.index;
    if (stats.firstImageAt === null) {
      stats.firstImageAt = performance.now();
      performance.mark("lightbox:first-image");
    }
  }

  function line(text) {
    const div = document.createElement("div");
    div.textContent = text;  // DICOM values: text, never markup
    return div;
  }

  function setOverlay(el, lines) {
    el.replaceChildren(...lines.filter((t) => t).map(line));
  }

  function updateOverlay(f) {
    const s = state.series;
    const p = DATA.patient, st = DATA.studyInfo, info = s.info;
    setOverlay(overlays.tl, [p.name, p.id && `ID ${p.id}`, [p.birthDate, p.sex].filter(Boolean).join(" ")]);
    setOverlay(overlays.tr, [st.description, [st.date, st.time].filter(Boolean).join(" "),
      st.accession && `Acc ${st.accession}`,
      `Series ${info.number || ""} ${info.modality || ""} ${info.description || ""}`.trim()]);
    const where = [];
    if (f.location !== null) where.push(`Loc ${Number(f.location).toFixed(1)}`);
    if (f.thickness !== null) where.push(`Thk ${f.thickness}`);
    setOverlay(overlays.bl, [
      `Image ${state.index + 1} / ${s.frames.length}`,
      `Instance ${f.number}${f.frames > 1 ? `, frame ${f.frame}` : ""}`,
      where.join("  "),
    ]);
    const w = state.window;
    setOverlay(overlays.br, [
      w ? `W ${Math.round(w.width)}  L ${Math.round(w.center)}` : "",
      `Zoom ${Math.round(state.zoom * 100)}%`,
    ]);
    sliceFill.style.height = `${((state.index + 1) / s.frames.length) * 100}%`;
  }

  // --- interaction -----------------------------------------------------------------------
  function go(i) {
    const s = state.series;
    if (!s || !s.frames.length) return;
    const next = Math.max(0, Math.min(s.frames.length - 1, i));
    if (next === state.index) return;
    state.index = next;
    scheduleDraw();
    prefetch();
  }

  function setWindow(center, width) {
    state.window = { center, width: Math.max(1, width) };
    scheduleDraw();
  }

  function fillPresets(modality) {
    presetSelect.replaceChildren();
    const options = [["Default", null, null], ["Auto (full range)", "auto", 0], ["Auto (1–99%)", "auto", 0.01]];
    if (modality === "CT") options.push(...CT_PRESETS);
    options.forEach(([name, c, w], k) => {
      const option = document.createElement("option");
      option.value = String(k);
      option.textContent = k < 9 ? `${k + 1}. ${name}` : name;
      option.dataset.center = c === null ? "" : String(c);
      option.dataset.width = w === null ? "" : String(w);
      presetSelect.appendChild(option);
    });
  }

  function applyPreset(k) {
    const option = presetSelect.options[k];
    if (!option || !state.series) return;
    presetSelect.value = option.value;
    const f = state.series.frames[state.index];
    const image = f && f.image;
    if (option.dataset.center === "") {
      state.window = image && image.kind === "grey" ? defaultWindow(f, image) : null;
    } else if (option.dataset.center === "auto") {
      if (image && image.kind === "grey") state.window = autoWindow(f, image, Number(option.dataset.width));
    } else {
      setWindow(Number(option.dataset.center), Number(option.dataset.width));
    }
    scheduleDraw();
  }

  function startCine() {
    if (state.cine || !state.series) return;
    const fps = Number(document.getElementById("fps").value) || 10;
    const button = document.getElementById("cine");
    button.setAttribute("aria-pressed", "true");
    button.textContent = "Stop";
    state.cine = setInterval(() => {
      go((state.index + 1) % state.series.frames.length);
    }, 1000 / fps);
  }

  function stopCine() {
    if (!state.cine) return;
    clearInterval(state.cine);
    state.cine = null;
    const button = document.getElementById("cine");
    button.setAttribute("aria-pressed", "false");
    button.textContent = "Play";
  }

  function resetView() {
    state.zoom = 1; state.panX = 0; state.panY = 0; state.invert = false;
    document.getElementById("invert").setAttribute("aria-pressed", "false");
    applyPreset(0);
  }

  function setTool(tool) {
    state.tool = tool;
    for (const b of document.querySelectorAll(".tool")) {
      b.setAttribute("aria-pressed", String(b.dataset.tool === tool));
    }
  }

  function seriesStep(delta) {
    const k = DATA.series.findIndex((s) => state.series && s.uid === state.series.uid);
    const next = DATA.series[(k + delta + DATA.series.length) % DATA.series.length];
    if (next) loadSeries(next.uid);
  }

  let wheelRest = 0;
  viewport.addEventListener("wheel", (event) => {
    event.preventDefault();
    if (event.ctrlKey) {
      state.zoom = Math.max(0.1, Math.min(20, state.zoom * (event.deltaY < 0 ? 1.1 : 1 / 1.1)));
      scheduleDraw();
      return;
    }
    // a notch (about 100 px) is one slice; a trackpad's small deltas add up to one
    wheelRest += event.deltaMode === 1 ? event.deltaY * 33 : event.deltaY;
    const steps = Math.trunc(wheelRest / 50);
    if (steps) { wheelRest -= steps * 50; go(state.index + Math.sign(steps) * Math.max(1, Math.abs(steps) >> 1)); }
  }, { passive: false });

  let drag = null;
  viewport.addEventListener("contextmenu", (event) => event.preventDefault());
  viewport.addEventListener("pointerdown", (event) => {
    viewport.focus();
    let mode = state.tool;
    if (event.button === 2) mode = "zoom";
    else if (event.button === 1 || event.shiftKey) mode = "pan";
    drag = { mode, x: event.clientX, y: event.clientY, window: state.window && { ...state.window },
             zoom: state.zoom, panX: state.panX, panY: state.panY };
    viewport.setPointerCapture(event.pointerId);
  });
  viewport.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
    if (drag.mode === "window" && drag.window) {
      const scale = Math.max(1, drag.window.width / 256);
      setWindow(drag.window.center + dy * scale, drag.window.width + dx * scale);
    } else if (drag.mode === "pan") {
      state.panX = drag.panX + dx; state.panY = drag.panY + dy; scheduleDraw();
    } else if (drag.mode === "zoom") {
      state.zoom = Math.max(0.1, Math.min(20, drag.zoom * Math.exp(-dy / 200))); scheduleDraw();
    }
  });
  const endDrag = () => { drag = null; };
  viewport.addEventListener("pointerup", endDrag);
  viewport.addEventListener("pointercancel", endDrag);

  document.addEventListener("keydown", (event) => {
    const t = event.target;
    if (t instanceof HTMLInputElement || t instanceof HTMLSelectElement || t instanceof HTMLTextAreaElement) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const handled = {
      ArrowDown: () => go(state.index + 1), ArrowRight: () => go(state.index + 1),
      ArrowUp: () => go(state.index - 1), ArrowLeft: () => go(state.index - 1),
      PageDown: () => go(state.index + 10), PageUp: () => go(state.index - 10),
      Home: () => go(0), End: () => go(Infinity),
      " ": () => (state.cine ? stopCine() : startCine()),
      r: resetView, i: () => document.getElementById("invert").click(),
      w: () => setTool("window"), p: () => setTool("pan"), z: () => setTool("zoom"),
      n: () => seriesStep(1), b: () => seriesStep(-1),
      "+": () => { state.zoom = Math.min(20, state.zoom * 1.25); scheduleDraw(); },
      "-": () => { state.zoom = Math.max(0.1, state.zoom / 1.25); scheduleDraw(); },
    }[event.key] || (/^[1-9]$/.test(event.key) ? () => applyPreset(Number(event.key) - 1) : null);
    if (!handled) return;
    if (t instanceof HTMLButtonElement && (event.key === " " || event.key === "Enter")) return;
    event.preventDefault();
    handled();
  });

  for (const b of document.querySelectorAll(".tool")) b.addEventListener("click", () => setTool(b.dataset.tool));
  for (const b of document.querySelectorAll(".series-choice")) {
    b.addEventListener("click", () => loadSeries(b.dataset.series));
  }
  presetSelect.addEventListener("change", () => applyPreset(Number(presetSelect.value)));
  document.getElementById("invert").addEventListener("click", (event) => {
    state.invert = !state.invert;
    event.currentTarget.setAttribute("aria-pressed", String(state.invert));
    scheduleDraw();
  });
  document.getElementById("reset").addEventListener("click", resetView);
  document.getElementById("cine").addEventListener("click", () => (state.cine ? stopCine() : startCine()));
  document.getElementById("fps").addEventListener("change", () => { if (state.cine) { stopCine(); startCine(); } });
  window.addEventListener("resize", scheduleDraw);

  window.lightboxViewer = {
    stats,
    get index() { return state.index; },
    get count() { return state.series ? state.series.frames.length : 0; },
    get loaded() { return state.series ? state.series.frames.filter((f) => f.image).length : 0; },
    get window() { return state.window && { ...state.window }; },
    get series() { return state.series && state.series.uid; },
    go, applyPreset, loadSeries,
    /** Show image ``i`` now (no animation frame): the benchmark's measure of drawing alone. */
    show(i) {
      if (!state.series || !state.series.frames[i] || !state.series.frames[i].image) return false;
      state.index = i;
      draw();
      return true;
    },
  };

  if (DATA.initial) loadSeries(DATA.initial);
  else status.textContent = "This study has no image series.";
  viewport.focus();
})();
