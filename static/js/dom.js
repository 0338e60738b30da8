// Small DOM helpers shared by the pages' scripts. Text goes in as text, never as HTML.
export const el = (tag, cls, text) => {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
};
