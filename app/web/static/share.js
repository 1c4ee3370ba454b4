/* A share link's first page (app/web/shares.py): the token is the URL's fragment, which the
 * browser never sent to the server. Strip it from the address bar (and so from the history),
 * give it to the server once (it answers with the share cookie, for this study's paths only),
 * then open the viewer. */
"use strict";

(async () => {
  const box = document.getElementById("share");
  if (!box) return;
  const status = document.getElementById("share-status");
  const token = decodeURIComponent(location.hash.replace(/^#/, ""));
  if (!token) {
    location.replace(box.dataset.viewUrl);
    return;
  }
  history.replaceState(null, "", location.pathname + location.search);
  let response;
  try {
    response = await fetch(box.dataset.openUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "text/plain" },
      body: JSON.stringify({ token }),
    });
  } catch (error) {
    status.textContent = "The server could not be reached. Try the link again.";
    return;
  }
  if (response.status === 204) {
    location.replace(box.dataset.viewUrl);
    return;
  }
  status.className = "alert";
  status.textContent = response.status === 403
    ? "This link is for another study."
    : response.status === 404 || response.status === 410
      ? "The shared study is no longer in the archive."
      : "This link cannot be opened: it has expired or was revoked. Ask whoever sent it for a new one.";
})();
