/* Lightbox pages: behaviour every page shares (no build step; CSP-compliant: no inline code).
 *
 * - Signing out clears what this tab kept in sessionStorage (the last study search).
 * - Buttons marked data-copy="<element id>" copy that element's text (share links).
 */
"use strict";

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.getAttribute("action") === "/logout") {
    try { sessionStorage.clear(); } catch (e) { /* storage off: nothing kept */ }
  }
});

document.addEventListener("click", async (event) => {
  const button = event.target instanceof Element ? event.target.closest("[data-copy]") : null;
  if (!button) return;
  const source = document.getElementById(button.dataset.copy);
  if (!source) return;
  const text = source.value !== undefined ? source.value : source.textContent;
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch (e) {
    if (source.select) source.select();
  }
});
