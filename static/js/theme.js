// The theme toggle: system → light → dark → system. The choice lives in a cookie the
// server reads (so the page is drawn in it, no flash) and in <html data-theme>; with no
// choice Pico follows prefers-color-scheme. Charts redraw on the "tanglaw:theme" event.
const COOKIE = "tanglaw_theme";
const NEXT = { "": "light", light: "dark", dark: "" };
const LABEL = { "": "Theme: system", light: "Theme: light", dark: "Theme: dark" };
const ICON = { "": "◐", light: "☀", dark: "☾" };

function current() {
  return document.documentElement.dataset.theme || "";
}

function show(button) {
  const theme = current();
  button.querySelector(".theme-icon").textContent = ICON[theme];
  button.querySelector(".theme-name").textContent = LABEL[theme];
  button.title = `${LABEL[theme]}: click to change`;
  button.dataset.current = theme || "system";
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-theme-toggle]").forEach((button) => {
    show(button);
    button.addEventListener("click", () => {
      const theme = NEXT[current()];
      if (theme) document.documentElement.dataset.theme = theme;
      else delete document.documentElement.dataset.theme;
      document.cookie = theme
        ? `${COOKIE}=${theme}; path=/; max-age=31536000; samesite=lax`
        : `${COOKIE}=; path=/; max-age=0; samesite=lax`;
      document.querySelectorAll("[data-theme-toggle]").forEach(show);
      document.dispatchEvent(new CustomEvent("tanglaw:theme", { detail: { theme } }));
    });
  });
});
