// The navigation folds behind a Menu button on narrow screens. Without this script the
// links stay visible (the CSS hides them only under html.js).
document.documentElement.classList.add("js");
document.addEventListener("DOMContentLoaded", () => {
  const button = document.querySelector("[data-nav-toggle]");
  const links = button && document.getElementById(button.getAttribute("aria-controls"));
  if (!links) return;
  const set = (open) => {
    button.setAttribute("aria-expanded", String(open));
    links.classList.toggle("open", open);
  };
  button.addEventListener("click", () => set(button.getAttribute("aria-expanded") !== "true"));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && links.classList.contains("open")) {
      set(false);
      button.focus();
    }
  });
});
