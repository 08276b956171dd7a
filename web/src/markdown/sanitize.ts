// The second line of defence: the parser (parser.ts) already escapes raw HTML and refuses
// unsafe links, and every piece of HTML it produces still goes through DOMPurify with an
// allowlist of the elements and attributes Markdown needs before it reaches the page, as a
// document fragment. Links keep an `href` only for http(s) and mailto;
// web links open in a new tab without opener, referrer or endorsement.
import DOMPurify from 'dompurify';

/** The only link targets that become clickable; anything else stays text. */
const SAFE_URL = /^(https?:\/\/|mailto:)/i;

export function isSafeUrl(url: string): boolean {
  return SAFE_URL.test(url.trim());
}

const ALLOWED_TAGS = [
  'a', 'blockquote', 'br', 'button', 'code', 'del', 'div', 'em', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6',
  'hr', 'input', 'li', 'ol', 'p', 'pre', 's', 'span', 'strong', 'table', 'tbody', 'td', 'th',
  'thead', 'tr', 'ul',
];
const ALLOWED_ATTR = ['href', 'title', 'class', 'type', 'checked', 'disabled', 'start', 'align', 'data-lang'];

DOMPurify.addHook('afterSanitizeAttributes', (node) => {
  if (node.nodeName === 'A') {
    const href = node.getAttribute('href');
    if (href === null || !isSafeUrl(href)) {
      node.removeAttribute('href');
    } else if (/^https?:/i.test(href.trim())) {
      node.setAttribute('target', '_blank');
      node.setAttribute('rel', 'noopener noreferrer nofollow');
    }
  } else if (node.nodeName === 'INPUT') {
    // Only the disabled checkboxes of task lists.
    if (node.getAttribute('type') !== 'checkbox') node.remove();
    else node.setAttribute('disabled', '');
  } else if (node.nodeName === 'BUTTON') {
    node.setAttribute('type', 'button');
  }
});

/** `html` as a document fragment of this page, with everything outside the allowlist removed. */
export function sanitizedFragment(html: string): DocumentFragment {
  return DOMPurify.sanitize(html, {
    ALLOWED_TAGS,
    ALLOWED_ATTR,
    ALLOW_DATA_ATTR: false,
    ALLOW_ARIA_ATTR: false,
    RETURN_DOM_FRAGMENT: true,
  });
}
