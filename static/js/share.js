// Copy and share buttons. The page works without this script: the address and the receipt
// are there to select, and the share links are plain links. It shows each button only
// where the browser can do what it says.
(function () {
  "use strict";

  function copyFrom(source) {
    var text = source.value !== undefined ? source.value : source.textContent;
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Older browsers, or a page not served over HTTPS: select the text and copy it.
    var range = document.createRange();
    range.selectNodeContents(source);
    if (source.select) { source.select(); } else {
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
    }
    return document.execCommand("copy") ? Promise.resolve() : Promise.reject();
  }

  document.querySelectorAll("[data-copy]").forEach(function (button) {
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source || !(navigator.clipboard || document.queryCommandSupported("copy"))) { return; }
    var status = document.createElement("span");
    status.className = "copied";
    status.setAttribute("role", "status");
    button.insertAdjacentElement("afterend", status);
    button.hidden = false;
    button.addEventListener("click", function () {
      copyFrom(source).then(function () {
        status.textContent = button.getAttribute("data-copied");
      }, function () { status.textContent = ""; });
    });
  });

  document.querySelectorAll("[data-share-url]").forEach(function (button) {
    if (!navigator.share) { return; }
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.share({
        title: button.getAttribute("data-share-title"),
        url: button.getAttribute("data-share-url")
      }).catch(function () {});
    });
  });
}());
