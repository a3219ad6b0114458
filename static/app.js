// Small progressive enhancements. Every feature works without JavaScript: links lead to
// confirmation pages and forms post and redirect; this file only makes them smoother.
(function () {
  "use strict";

  // Confirmation dialogs: a link with data-dialog opens the <dialog> of that id instead of
  // navigating to the confirmation page.
  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-dialog]");
    if (!opener) return;
    var dialog = document.getElementById(opener.getAttribute("data-dialog"));
    if (!dialog || typeof dialog.showModal !== "function") return;
    event.preventDefault();
    dialog.showModal();
  });

  // Copy buttons: data-copy names the element whose text is copied.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) return;
    var text = source.textContent.trim();
    var done = function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 2000);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done);
    } else {
      // Plain http on a non-local host has no clipboard API: select the text instead.
      var range = document.createRange();
      range.selectNodeContents(source);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      button.textContent = "Press Ctrl+C";
    }
  });

  // Inline forms: data-inline-target names an element whose content (or the content of
  // its [data-inline-content] child) is replaced by the fragment the server answers with.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var targetId = form.getAttribute("data-inline-target");
    if (!targetId || !window.fetch) return;
    var target = document.getElementById(targetId);
    if (!target) return;
    event.preventDefault();
    var slot = target.hasAttribute("data-inline-content")
      ? target
      : target.querySelector("[data-inline-content]") || target;
    var button = form.querySelector("[type=submit]");
    var label = button ? button.textContent : "";
    if (button) {
      button.disabled = true;
      if (button.hasAttribute("data-busy-label")) button.textContent = button.getAttribute("data-busy-label");
    }
    target.hidden = false;
    target.setAttribute("aria-busy", "true");
    fetch(form.action, {
      method: "POST",
      body: new FormData(form),
      headers: { "X-Inline": "1" },
      credentials: "same-origin",
    })
      .then(function (response) {
        if (response.redirected) {
          // The session expired: the login page is where the user needs to go.
          window.location.href = response.url;
          return null;
        }
        // 429 carries a message for the user (e.g. too many test sends at once).
        if (!response.ok && response.status !== 429) throw new Error("HTTP " + response.status);
        return response.text();
      })
      .then(function (html) {
        if (html === null) return;
        slot.innerHTML = html;
        if (form.hasAttribute("data-once")) form.remove();
        if (form.hasAttribute("data-refresh")) refresh(form.getAttribute("data-refresh").split(" "));
      })
      .catch(function (error) {
        slot.innerHTML = "";
        var p = document.createElement("p");
        p.className = "field-error";
        p.textContent = "That did not work (" + error.message + "). Reload the page and try again.";
        slot.appendChild(p);
      })
      .finally(function () {
        target.removeAttribute("aria-busy");
        if (button && document.body.contains(button)) {
          button.disabled = false;
          button.textContent = label;
        }
      });
  });

  // Parts of the page that an inline action changed (a test adds a delivery, moves the
  // chart and the list row's "Last delivery"): fetched again from the page's own URL.
  function refresh(ids) {
    var present = ids.filter(function (id) { return id && document.getElementById(id); });
    if (!present.length) return;
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html");
        present.forEach(function (id) {
          var now = document.getElementById(id);
          var next = fresh.getElementById(id);
          if (now && next) now.innerHTML = next.innerHTML;
        });
      })
      .catch(function () {});
  }

  // Fields shown only for one choice of a radio group: data-show-when="name=value".
  function syncConditional() {
    document.querySelectorAll("[data-show-when]").forEach(function (block) {
      var rule = block.getAttribute("data-show-when").split("=");
      var checked = document.querySelector('input[name="' + rule[0] + '"]:checked');
      // A field with an error stays visible, whatever is chosen, so the error is seen.
      block.hidden = (!checked || checked.value !== rule[1]) && !block.querySelector(".field-error");
    });
  }
  document.addEventListener("change", function (event) {
    if (event.target.matches("input[type=radio]")) syncConditional();
  });

  // Live tables: an element with data-live="<ms>" is refreshed from the same URL while the
  // tab is visible, unless the user is interacting with something inside it.
  function startLive(element) {
    var every = parseInt(element.getAttribute("data-live"), 10) || 5000;
    setInterval(function () {
      if (document.visibilityState !== "visible") return;
      if (element.contains(document.activeElement) && document.activeElement !== document.body) return;
      fetch(window.location.href, { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          if (!html) return;
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(element.id);
          if (fresh && fresh.innerHTML !== element.innerHTML) element.innerHTML = fresh.innerHTML;
        })
        .catch(function () {});
    }, every);
  }

  document.addEventListener("DOMContentLoaded", function () {
    syncConditional();
    document.querySelectorAll("[data-live][id]").forEach(startLive);
  });
})();
