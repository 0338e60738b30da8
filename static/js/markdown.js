// Markdown for untrusted model output: marked renders, DOMPurify keeps an allow-list.
// Raw HTML in the text is shown as text; images become links (nothing remote loads by
// itself); links are http(s)/mailto only and open without a referrer.
import { marked } from "../vendor/marked/marked.esm.js";
import DOMPurify from "../vendor/dompurify/purify.es.mjs";

const escapeHtml = (s) => s.replace(/[&<>"']/g, (c) => ({
  "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
}[c]));

marked.use({
  gfm: true,
  breaks: true,
  renderer: {
    html({ text }) { return escapeHtml(text); },
    image({ href, text }) { return `<a href="${escapeHtml(href || "")}">image: ${escapeHtml(text || href || "")}</a>`; },
  },
});

const ALLOWED_TAGS = ["p", "br", "strong", "em", "del", "code", "pre", "blockquote", "ul", "ol",
  "li", "h1", "h2", "h3", "h4", "h5", "h6", "a", "table", "thead", "tbody", "tr", "th", "td", "hr"];

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    const href = node.getAttribute("href") || "";
    if (!/^(https?:|mailto:)/i.test(href.trim())) node.removeAttribute("href");
    node.setAttribute("rel", "noopener noreferrer nofollow");
    node.setAttribute("target", "_blank");
  }
});

export function renderMarkdown(element, text) {
  const html = marked.parse(text, { async: false });
  element.innerHTML = DOMPurify.sanitize(html, {
    ALLOWED_TAGS, ALLOWED_ATTR: ["href", "title"], ALLOW_DATA_ATTR: false,
  });
  element.classList.add("md");
  addCopyButtons(element);
}

// Each code block gets a Copy button (made here, never from the model's text).
export function addCopyButtons(element) {
  for (const pre of element.querySelectorAll("pre")) {
    if (pre.parentElement.classList.contains("code-block")) continue;
    const box = document.createElement("div");
    box.className = "code-block";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy-code secondary outline";
    button.textContent = "Copy";
    button.setAttribute("aria-label", "Copy this code");
    button.addEventListener("click", async () => {
      const code = pre.textContent;
      try {
        await navigator.clipboard.writeText(code);
        button.textContent = "Copied";
      } catch {
        const range = document.createRange();
        range.selectNodeContents(pre);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        button.textContent = "Selected: press Ctrl+C";
      }
      setTimeout(() => { button.textContent = "Copy"; }, 2000);
    });
    pre.replaceWith(box);
    box.append(button, pre);
  }
}
