// The new-backend form: picking a kind fills in the address that kind answers on by
// default, unless the address was typed by hand (then it is left alone).
document.addEventListener("DOMContentLoaded", () => {
  const kind = document.querySelector("select[data-default-urls]");
  const url = kind && kind.form.querySelector("[name=base_url]");
  if (!url) return;
  const defaults = JSON.parse(kind.dataset.defaultUrls);
  const ours = () => url.value.trim() === "" || Object.values(defaults).includes(url.value.trim());
  kind.addEventListener("change", () => {
    if (ours() && defaults[kind.value]) url.value = defaults[kind.value];
  });
});
