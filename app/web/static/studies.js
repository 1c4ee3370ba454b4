/* The study list (app/web/home.py): keyboard navigation, and the tab's last search kept in
 * sessionStorage so that coming back to the list shows it again (the search is posted, never
 * in the URL, so the browser alone would forget it). sessionStorage lives as long as the tab
 * and is cleared at sign-out (lightbox.js). */
"use strict";

(() => {
  const form = document.getElementById("study-search");
  if (!form) return;
  const KEY = "lightbox.studySearch";
  const FIELDS = ["patient_name", "patient_id", "accession", "description", "modality",
                  "date_from", "date_to", "page_size"];

  function remember() {
    const results = document.getElementById("results");
    const saved = { page: results ? results.dataset.page || "1" : "1" };
    for (const name of FIELDS.concat(["current_sort", "current_dir"])) {
      const field = form.elements.namedItem(name);
      if (field) saved[name] = field.value;
    }
    try { sessionStorage.setItem(KEY, JSON.stringify(saved)); } catch (e) { /* off */ }
  }

  function restore() {
    let saved = null;
    try { saved = JSON.parse(sessionStorage.getItem(KEY) || "null"); } catch (e) { return; }
    if (!saved || typeof saved !== "object") return;
    // only a search that differs from the default list is worth running again
    const differs = FIELDS.some((n) => n !== "page_size" && saved[n]) ||
      saved.page !== "1" || saved.current_sort !== "date" || saved.current_dir !== "desc" ||
      (saved.page_size && saved.page_size !== form.elements.namedItem("page_size").value);
    if (!differs) return;
    for (const [name, value] of Object.entries(saved)) {
      const field = form.elements.namedItem(name);
      if (field && typeof value === "string") field.value = value;
    }
    const page = document.createElement("input");
    page.type = "hidden";
    page.name = "page";
    page.value = /^\d{1,6}$/.test(saved.page) ? saved.page : "1";
    page.dataset.restore = "true";
    form.appendChild(page);
    if (window.htmx) window.htmx.trigger(form, "submit");
    else form.requestSubmit();
  }

  document.body.addEventListener("htmx:afterSwap", () => {
    for (const extra of form.querySelectorAll("input[data-restore]")) extra.remove();
    remember();
  });
  form.addEventListener("reset", () => {
    try { sessionStorage.removeItem(KEY); } catch (e) { /* off */ }
  });

  function links() {
    return Array.from(document.querySelectorAll("#results a.study-link"));
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.target;
    const typing = target instanceof HTMLInputElement || target instanceof HTMLSelectElement ||
      target instanceof HTMLTextAreaElement;
    if (event.key === "/" && !typing) {
      event.preventDefault();
      const name = document.getElementById("patient_name");
      name.focus();
      name.select();
      return;
    }
    const all = links();
    if (!all.length) return;
    const at = all.indexOf(document.activeElement);
    let next = null;
    if ((event.key === "j" && !typing) || (event.key === "ArrowDown" && at >= 0)) {
      next = at < 0 ? 0 : Math.min(all.length - 1, at + 1);
    } else if ((event.key === "k" && !typing) || (event.key === "ArrowUp" && at >= 0)) {
      next = at < 0 ? 0 : Math.max(0, at - 1);
    } else if (event.key === "Escape" && typing) {
      target.blur();
      return;
    }
    if (next !== null) {
      event.preventDefault();
      all[next].focus();
      all[next].closest("tr").scrollIntoView({ block: "nearest" });
    }
  });

  const results = document.getElementById("results");
  if (results && !results.querySelector(".alert")) restore();
})();
