// Forms with data-confirm ask before submitting (inline handlers are blocked by the CSP).
document.addEventListener("submit", (event) => {
  const message = event.target.dataset ? event.target.dataset.confirm : null;
  if (message && !window.confirm(message)) event.preventDefault();
});
