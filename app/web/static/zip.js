/* A ZIP archive reader for the upload page (upload.js), with nothing vendored: the central
 * directory is read with Blob.slice (only the bytes asked for are read, however large the
 * archive), and an entry is its own slice of the archive ("stored") or that slice inflated by
 * the browser's DecompressionStream("deflate-raw") ("deflated"), never the whole archive in
 * memory. ZIP64 archives (beyond 4 GiB or 65,535 entries) are read too. Other compression
 * methods and encrypted entries are listed with the reason they cannot be opened.
 * (APPNOTE.TXT 6.3: 4.3.12 central directory header, 4.3.16 end of central directory record,
 * 4.3.14/15 the ZIP64 ones, 4.5.3 the ZIP64 extra field, 4.3.7 local file header.)
 */
"use strict";

(() => {
  const EOCD = 0x06054b50, EOCD64 = 0x06064b50, LOCATOR64 = 0x07064b50;
  const CENTRAL = 0x02014b50, LOCAL = 0x04034b50;

  async function bytes(blob, start, end) {
    return new DataView(await blob.slice(start, end).arrayBuffer());
  }

  function u64(view, at) {
    const value = view.getBigUint64(at, true);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error("ZIP64 value out of range");
    return Number(value);
  }

  /** Whether the blob starts as a ZIP archive does (a local file header, or an empty one). */
  async function isZip(blob) {
    if (blob.size < 22) return false;
    const head = await bytes(blob, 0, 4);
    const sig = head.getUint32(0, true);
    return sig === LOCAL || sig === EOCD;
  }

  async function endRecord(blob) {
    const tail = Math.min(blob.size, 22 + 65535);
    const view = await bytes(blob, blob.size - tail, blob.size);
    for (let at = view.byteLength - 22; at >= 0; at--) {
      if (view.getUint32(at, true) !== EOCD) continue;
      const record = {
        entries: view.getUint16(at + 10, true),
        size: view.getUint32(at + 12, true),
        offset: view.getUint32(at + 16, true),
        position: blob.size - tail + at,
      };
      if (record.entries === 0xffff || record.size === 0xffffffff || record.offset === 0xffffffff) {
        const locator = await bytes(blob, record.position - 20, record.position);
        if (locator.getUint32(0, true) !== LOCATOR64) throw new Error("ZIP64 locator missing");
        const at64 = u64(locator, 8);
        const z = await bytes(blob, at64, at64 + 56);
        if (z.getUint32(0, true) !== EOCD64) throw new Error("ZIP64 end record missing");
        record.entries = u64(z, 32);
        record.size = u64(z, 40);
        record.offset = u64(z, 48);
      }
      return record;
    }
    throw new Error("not a ZIP archive (no end of central directory)");
  }

  /** The archive's entries: name, sizes, method, where its local header is, and why it
   * cannot be opened (``refusal``), if so. Folders are left out. */
  async function entries(blob) {
    const end = await endRecord(blob);
    if (end.offset + end.size > blob.size) throw new Error("the ZIP archive is truncated");
    const view = await bytes(blob, end.offset, end.offset + end.size);
    const utf8 = new TextDecoder("utf-8");
    const out = [];
    let at = 0;
    for (let k = 0; k < end.entries; k++) {
      if (at + 46 > view.byteLength || view.getUint32(at, true) !== CENTRAL) {
        throw new Error("the ZIP central directory is damaged");
      }
      const flags = view.getUint16(at + 8, true);
      const method = view.getUint16(at + 10, true);
      let csize = view.getUint32(at + 20, true);
      let size = view.getUint32(at + 24, true);
      const nameLength = view.getUint16(at + 28, true);
      const extraLength = view.getUint16(at + 30, true);
      const commentLength = view.getUint16(at + 32, true);
      let offset = view.getUint32(at + 42, true);
      const name = utf8.decode(new Uint8Array(view.buffer, view.byteOffset + at + 46, nameLength));
      let e = at + 46 + nameLength;
      const extraEnd = e + extraLength;
      while (e + 4 <= extraEnd) {
        const id = view.getUint16(e, true), length = view.getUint16(e + 2, true);
        if (id === 0x0001) {  // ZIP64: the fields that overflowed, in this order
          let f = e + 4;
          if (size === 0xffffffff) { size = u64(view, f); f += 8; }
          if (csize === 0xffffffff) { csize = u64(view, f); f += 8; }
          if (offset === 0xffffffff) { offset = u64(view, f); f += 8; }
        }
        e += 4 + length;
      }
      at = extraEnd + commentLength;
      if (name.endsWith("/")) continue;
      let refusal = null;
      if (flags & 1) refusal = "encrypted ZIP entry";
      else if (method !== 0 && method !== 8) refusal = `ZIP compression method ${method} is not supported`;
      out.push({ name, size, csize, method, offset, refusal });
    }
    return out;
  }

  /** An entry's content as a Blob (stored: a slice of the archive; deflated: inflated). */
  async function open(blob, entry) {
    if (entry.refusal) throw new Error(entry.refusal);
    const local = await bytes(blob, entry.offset, entry.offset + 30);
    if (local.getUint32(0, true) !== LOCAL) throw new Error("the ZIP entry's header is damaged");
    const start = entry.offset + 30 + local.getUint16(26, true) + local.getUint16(28, true);
    const data = blob.slice(start, start + entry.csize, "application/dicom");
    if (entry.method === 0) return data;
    const inflated = data.stream().pipeThrough(new DecompressionStream("deflate-raw"));
    const out = await new Response(inflated).blob();
    if (out.size !== entry.size) throw new Error("the ZIP entry did not inflate to its size");
    return out;
  }

  window.LightboxZip = { isZip, entries, open };
})();
