// The assistant's replies as Markdown: `marked` (vendored) turns the text into HTML with raw HTML
// from the model rendered as text, then DOMPurify (vendored) keeps only what plain Markdown makes.
// Links open in a new tab without a referrer; images are dropped (the page's CSP would block
// any foreign one, and a reply has no business loading things).

import { Marked } from '/vendor/marked/marked.esm.js';
import DOMPurify from '/vendor/dompurify/purify.es.mjs';

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

const markdown = new Marked({ gfm: true, breaks: true, async: false });
markdown.use({
  renderer: {
    // HTML written by the model is shown as the text it is, never parsed as markup.
    html(token) {
      return escapeHtml(token.text ?? token.raw ?? '');
    },
  },
});

DOMPurify.addHook('afterSanitizeAttributes', (node) => {
  if (node.tagName === 'A' && node.hasAttribute('href')) {
    node.setAttribute('target', '_blank');
    node.setAttribute('rel', 'noopener noreferrer nofollow');
  }
});

const PURIFY = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: ['img', 'picture', 'video', 'audio', 'source', 'style', 'form', 'input', 'button', 'textarea', 'select', 'iframe', 'svg', 'math'],
  FORBID_ATTR: ['style', 'class', 'id'],
};

/** Safe HTML for a reply's Markdown text. */
export function renderMarkdown(text) {
  return DOMPurify.sanitize(markdown.parse(text || '').trim(), PURIFY);
}
