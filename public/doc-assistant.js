/*
 * Doc Assistant: open a source panel only when the reader clicks a citation.
 *
 * Since Chainlit 2.11 the side panel opens by itself whenever a message brings display="side"
 * elements, listing every side element of the conversation (upstream issues #2932 and #2979; the
 * fix, PR #2982, is not released in 2.12.0). Every answer here carries its sources as side
 * elements, so the panel would pop open after each reply. This closes a panel that opened or
 * changed without a click on a citation chip. If Chainlit's markup changes, it simply does nothing.
 */
(function () {
  "use strict";
  var lastClick = 0;
  var shown = null; // what the open panel showed last time we looked

  document.addEventListener("click", function (event) {
    var target = event.target;
    if (target && target.closest && target.closest("a.element-link")) {
      lastClick = Date.now();
    }
  }, true);

  function close(title) {
    var button = title.querySelector("button");
    if (button) {
      button.click(); // desktop: the panel's back arrow
    } else {
      document.dispatchEvent(new KeyboardEvent("keydown", { key: "Escape", bubbles: true })); // mobile sheet
    }
  }

  function check() {
    var title = document.getElementById("side-view-title");
    if (!title) {
      shown = null;
      return;
    }
    var content = document.getElementById("side-view-content");
    var signature = title.textContent + "|" + (content ? content.childElementCount : 0);
    if (signature === shown) {
      return;
    }
    shown = signature;
    if (Date.now() - lastClick > 1500) {
      shown = null;
      close(title);
    }
  }

  new MutationObserver(check).observe(document.documentElement, { childList: true, subtree: true });
})();
