/* The upload page (app/web/upload.py): files, folders and ZIP archives, stored by STOW-RS in
 * batches with a progress bar and a result per file; resumable.
 *
 * A batch is a multipart/related body made as a Blob of the files themselves (the browser
 * streams it from disk: nothing is read whole), POSTed to {root}/studies with the session
 * cookie and its CSRF token. Before a batch is sent, each file's first bytes are read: a PS3.10
 * file has "DICM" at byte 128, then its File Meta group names its SOP Instance UID; files
 * without it are refused here, and the UIDs already in the archive (one QIDO-RS search per
 * batch) are skipped as already stored. The STOW-RS response names each instance stored or
 * refused with its FailureReason. A batch that fails on the network is sent again (three
 * tries); then it waits for Resume, which starts by skipping what the server has stored since.
 * File names and server text are shown with textContent only.
 */
"use strict";

(() => {
  const root = document.getElementById("upload");
  if (!root) return;
  const DICOMWEB = root.dataset.dicomweb;
  const MAX_FILE = Number(root.dataset.maxFile);
  const BATCH_FILES = Number(root.dataset.batchFiles);
  const BATCH_BYTES = Number(root.dataset.batchBytes);
  const CSRF = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const RETRIES = 3;
  const REASONS = {
    0x0110: "the server could not process it",
    0x0111: "a different instance with this SOP Instance UID is stored already",
    0x0122: "its SOP class is not accepted by this server",
    0x0124: "not permitted",
    0xa700: "the server is out of resources for it (too large?)",
    0xa900: "its data set does not match its SOP class",
    0xc000: "the server cannot read it as DICOM",
    0xc122: "its transfer syntax is not supported",
  };
  const WARNINGS = {
    0xb000: "stored; some values were coerced",
    0xb006: "stored; some elements were discarded",
    0xb007: "stored; the data set does not match its SOP class",
  };

  const el = (id) => document.getElementById(id);
  const rows = el("upload-results");
  const items = [];
  const counts = { stored: 0, duplicate: 0, refused: 0, failed: 0 };
  let running = false, stopped = false, current = null;
  let totalBytes = 0, doneBytes = 0;

  function mib(n) { return `${(n / 1048576).toFixed(n < 10485760 ? 1 : 0)} MiB`; }

  // --- collecting files ------------------------------------------------------------------
  function readAll(reader) {
    return new Promise((resolve, reject) => {
      const out = [];
      const next = () => reader.readEntries((batch) => {
        if (!batch.length) resolve(out);
        else { out.push(...batch); next(); }
      }, reject);
      next();
    });
  }

  async function walk(entry, into) {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      into.push({ label: entry.fullPath.replace(/^\//, ""), file });
    } else if (entry.isDirectory) {
      for (const child of await readAll(entry.createReader())) await walk(child, into);
    }
  }

  async function fromDrop(transfer) {
    const found = [];
    const entries = Array.from(transfer.items || [])
      .map((i) => (i.webkitGetAsEntry ? i.webkitGetAsEntry() : null)).filter(Boolean);
    if (entries.length) {
      for (const entry of entries) await walk(entry, found);
    } else {
      for (const file of transfer.files) found.push({ label: file.name, file });
    }
    return found;
  }

  function fromInput(input) {
    return Array.from(input.files).map((file) => ({ label: file.webkitRelativePath || file.name, file }));
  }

  async function add(found) {
    for (const { label, file } of found) {
      if (/\.zip$/i.test(file.name) || (file.size > 4 && await window.LightboxZip.isZip(file))) {
        let entries;
        try {
          entries = await window.LightboxZip.entries(file);
        } catch (error) {
          track({ label, size: 0, source: null }).refuse(`not a readable ZIP archive: ${error.message}`);
          continue;
        }
        for (const entry of entries) {
          if (entry.name.startsWith("__MACOSX/")) continue;
          const item = track({ label: `${label} › ${entry.name}`, size: entry.size,
                               source: () => window.LightboxZip.open(file, entry) });
          if (entry.refusal) item.refuse(entry.refusal);
        }
      } else {
        track({ label, size: file.size, source: () => Promise.resolve(file) });
      }
    }
    el("progress-panel").hidden = false;
    el("results-panel").hidden = false;
    progress();
    run();
  }

  function track(item) {
    const row = document.createElement("tr");
    const name = document.createElement("td");
    const result = document.createElement("td");
    const detail = document.createElement("td");
    name.textContent = item.label;
    result.textContent = "waiting";
    result.className = "result-pending";
    row.append(name, result, detail);
    rows.append(row);
    Object.assign(item, {
      state: "pending", uid: null, blob: null, tries: 0,
      set(state, text, why) {
        if (this.state in counts) counts[this.state]--;
        if (state in counts) counts[state]++;
        if (this.state === "pending" && state !== "pending") doneBytes += this.size;
        if (this.state !== "pending" && state === "pending") doneBytes -= this.size;
        this.state = state;
        result.textContent = text;
        result.className = `result-${state}`;
        detail.textContent = why || "";
        row.dataset.state = state;
        if (state !== "pending") this.blob = null;  // let the browser drop inflated entries
        progress();
      },
      refuse(why) { this.set("refused", "refused", why); },
    });
    items.push(item);
    totalBytes += item.size;
    return item;
  }

  // --- reading a file's File Meta group (PS3.10 7.1) ---------------------------------------
  const LONG_VRS = new Set(["OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"]);

  async function inspect(item) {
    const blob = await item.source();
    item.size = item.size || blob.size;
    if (!blob.size) return item.refuse("the file is empty");
    if (blob.size > MAX_FILE) {
      return item.refuse(`larger (${mib(blob.size)}) than this server accepts per file (${mib(MAX_FILE)})`);
    }
    const head = new Uint8Array(await blob.slice(0, Math.min(blob.size, 65536)).arrayBuffer());
    const marker = String.fromCharCode(...head.subarray(128, 132));
    if (marker !== "DICM") {
      return item.refuse("not a DICOM file (a PS3.10 file has 'DICM' at byte 128)");
    }
    const view = new DataView(head.buffer);
    let at = 132;
    const meta = {};
    while (at + 8 <= head.length && view.getUint16(at, true) === 0x0002) {
      const element = view.getUint16(at + 2, true);
      const vr = String.fromCharCode(head[at + 4], head[at + 5]);
      let length, value;
      if (LONG_VRS.has(vr)) { length = view.getUint32(at + 8, true); value = at + 12; }
      else { length = view.getUint16(at + 6, true); value = at + 8; }
      if (value + length > head.length) break;
      if (vr === "UI") {
        meta[element] = String.fromCharCode(...head.subarray(value, value + length)).replace(/[\0 ]+$/, "");
      }
      at = value + length;
    }
    if (meta[0x0002] === "1.2.840.10008.1.3.10") {
      return item.refuse("a DICOMDIR (the index of removable media), not an instance: not stored");
    }
    item.uid = meta[0x0003] || null;
    item.blob = blob;
    return item;
  }

  // --- talking to the server -------------------------------------------------------------
  async function alreadyStored(uids) {
    const found = new Set();
    for (let k = 0; k < uids.length; k += 100) {
      const chunk = uids.slice(k, k + 100);
      const params = new URLSearchParams({ SOPInstanceUID: chunk.join(","), includefield: "00080018", limit: String(chunk.length) });
      const response = await fetch(`${DICOMWEB}/instances?${params}`, {
        headers: { Accept: "application/dicom+json" }, credentials: "same-origin",
      });
      if (response.status === 204) continue;
      if (!response.ok) throw Object.assign(new Error(`search: HTTP ${response.status}`), { status: response.status });
      for (const obj of await response.json()) {
        const v = obj["00080018"] && obj["00080018"].Value;
        if (v && v[0]) found.add(v[0]);
      }
    }
    return found;
  }

  function body(batch, boundary) {
    const parts = [];
    for (const item of batch) {
      parts.push(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`, item.blob, "\r\n");
    }
    parts.push(`--${boundary}--\r\n`);
    return new Blob(parts);
  }

  function post(batch) {
    return new Promise((resolve) => {
      const boundary = `lightbox-${crypto.randomUUID()}`;
      const xhr = new XMLHttpRequest();
      current = xhr;
      const base = doneBytes;
      const size = batch.reduce((n, i) => n + i.size, 0);
      xhr.open("POST", `${DICOMWEB}/studies`);
      xhr.setRequestHeader("Content-Type", `multipart/related; type="application/dicom"; boundary=${boundary}`);
      xhr.setRequestHeader("Accept", "application/dicom+json");
      xhr.setRequestHeader("X-CSRF-Token", CSRF);
      xhr.upload.onprogress = (event) => {
        if (event.lengthComputable) progress(base + size * (event.loaded / event.total));
      };
      xhr.onload = () => { current = null; resolve({ status: xhr.status, text: xhr.responseText }); };
      xhr.onerror = () => { current = null; resolve({ status: 0, text: "" }); };
      xhr.onabort = () => { current = null; resolve({ status: -1, text: "" }); };
      xhr.send(body(batch, boundary));
    });
  }

  function sequence(json, tag) {
    const element = json && json[tag];
    return element && Array.isArray(element.Value) ? element.Value : [];
  }

  function uidOf(obj) {
    const v = obj["00081155"] && obj["00081155"].Value;
    return v ? v[0] : null;
  }

  function code(obj, tag) {
    const v = obj[tag] && obj[tag].Value;
    return v ? Number(v[0]) : null;
  }

  function settle(batch, answer) {
    let json = null;
    try { json = answer.text ? JSON.parse(answer.text) : null; } catch (e) { json = null; }
    const byUid = new Map(batch.filter((i) => i.uid).map((i) => [i.uid, i]));
    const unnamed = batch.filter((i) => !i.uid);
    for (const obj of sequence(json, "00081199")) {
      const item = byUid.get(uidOf(obj));
      if (!item) continue;
      byUid.delete(item.uid);
      const warning = code(obj, "00081196");
      item.set("stored", "stored", warning !== null ? WARNINGS[warning] || `stored, warning 0x${warning.toString(16)}` : "");
    }
    for (const obj of sequence(json, "00081198")) {
      const item = byUid.get(uidOf(obj));
      if (!item) continue;
      byUid.delete(item.uid);
      const reason = code(obj, "00081197");
      item.refuse(`${REASONS[reason] || "refused"} (0x${(reason || 0).toString(16).toUpperCase()})`);
    }
    const others = sequence(json, "0008119A");
    const left = unnamed.concat(Array.from(byUid.values()));
    left.forEach((item, k) => {
      const reason = others[k] ? code(others[k], "00081197") : null;
      if (reason !== null) item.refuse(`${REASONS[reason] || "refused"} (0x${reason.toString(16).toUpperCase()})`);
      else if (answer.status === 413) item.refuse("too large for the server");
      else item.refuse(json && json.detail ? String(json.detail) : `the server answered ${answer.status}`);
    });
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  async function send(batch) {
    while (true) {
      const answer = await post(batch);
      if (answer.status === -1) {  // stopped
        for (const item of batch) item.set("failed", "not sent", "stopped; Resume sends it");
        return;
      }
      if (answer.status === 401) {
        for (const item of batch) item.set("failed", "not sent", "your session has ended: sign in again, then Resume");
        stopped = true;
        return;
      }
      if (answer.status === 0 || answer.status >= 500 || answer.status === 408 || answer.status === 429) {
        batch.forEach((i) => i.tries++);
        if (batch[0].tries < RETRIES && !stopped) {
          el("progress-text").textContent = `The connection failed; trying again (${batch[0].tries} of ${RETRIES - 1})…`;
          await sleep(1000 * 3 ** (batch[0].tries - 1));
          // what the failed attempt stored meanwhile is not sent again
          const stored = await alreadyStored(batch.filter((i) => i.uid).map((i) => i.uid)).catch(() => new Set());
          for (const item of batch) if (stored.has(item.uid)) item.set("stored", "stored", "");
          batch = batch.filter((i) => i.state === "pending");
          if (!batch.length) return;
          continue;
        }
        for (const item of batch) {
          item.set("failed", "not sent", answer.status ? `the server answered ${answer.status}` : "the network failed");
        }
        return;
      }
      settle(batch, answer);
      return;
    }
  }

  function nextBatch() {
    const batch = [];
    let bytes = 0;
    for (const item of items) {
      if (item.state !== "pending" || item.claimed) continue;
      if (batch.length && (batch.length >= BATCH_FILES || bytes + item.size > BATCH_BYTES)) break;
      item.claimed = true;
      batch.push(item);
      bytes += item.size;
    }
    return batch;
  }

  async function run() {
    if (running) return;
    running = true;
    stopped = false;
    el("resume").hidden = true;
    el("cancel").hidden = false;
    try {
      let batch;
      while (!stopped && (batch = nextBatch()).length) {
        for (const item of batch) {
          try { await inspect(item); } catch (error) { item.refuse(`could not be read: ${error.message}`); }
        }
        let ready = batch.filter((i) => i.state === "pending");
        try {
          const stored = await alreadyStored(ready.filter((i) => i.uid).map((i) => i.uid));
          for (const item of ready) if (stored.has(item.uid)) item.set("duplicate", "already stored", "skipped: the archive holds this SOP Instance UID");
        } catch (error) {
          if (error.status === 401) {
            for (const item of ready) item.set("failed", "not sent", "your session has ended: sign in again, then Resume");
            stopped = true;
            break;
          }
          // no answer to the search: send them; the server says what it keeps
        }
        ready = ready.filter((i) => i.state === "pending");
        // a file with no SOP Instance UID in its header goes alone: its answer names nobody
        const named = ready.filter((i) => i.uid);
        if (named.length) await send(named);
        for (const item of ready.filter((i) => !i.uid)) await send([item]);
        for (const item of batch) item.claimed = false;
      }
    } finally {
      running = false;
      el("cancel").hidden = true;
      el("resume").hidden = counts.failed === 0;
      progress();
    }
  }

  function progress(bytes) {
    const done = bytes === undefined ? doneBytes : bytes;
    const bar = el("progress");
    bar.max = Math.max(1, totalBytes);
    bar.value = Math.min(done, totalBytes);
    for (const k of Object.keys(counts)) el(`count-${k}`).textContent = String(counts[k]);
    const finished = items.filter((i) => i.state !== "pending").length;
    const text = `${finished} of ${items.length} files, ${mib(Math.min(done, totalBytes))} of ${mib(totalBytes)}`;
    el("progress-text").textContent = running || finished < items.length ? text : `Done: ${text}`;
    root.dataset.finished = String(!running && finished === items.length);
  }

  // --- wiring ----------------------------------------------------------------------------
  const zone = el("dropzone");
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dragging"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", async (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    await add(await fromDrop(event.dataTransfer));
  });
  for (const id of ["pick-files", "pick-folder"]) {
    el(id).addEventListener("change", async (event) => {
      await add(fromInput(event.target));
      event.target.value = "";
    });
  }
  el("resume").addEventListener("click", () => {
    for (const item of items) if (item.state === "failed") { item.tries = 0; item.set("pending", "waiting", ""); }
    run();
  });
  el("cancel").addEventListener("click", () => {
    stopped = true;
    if (current) current.abort();
  });
  window.lightboxUpload = { items, counts, get running() { return running; } };
})();
