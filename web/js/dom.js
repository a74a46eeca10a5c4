// The page's elements, and small DOM helpers. Text from the network only
// ever reaches the page through `el(..., text)` and textContent.

export const $ = (id) => document.getElementById(id);

export const ui = {
  body: document.body,
  loginView: $("login-view"),
  loginForm: $("login-form"),
  loginUser: $("login-username"),
  loginPass: $("login-password"),
  loginError: $("login-error"),
  loginSubmit: $("login-submit"),
  chatView: $("chat-view"),
  me: $("me"),
  logout: $("logout"),
  connState: $("conn-state"),
  notice: $("notice"),
  noticeText: $("notice-text"),
  reconnect: $("reconnect"),
  contacts: $("contacts"),
  newGroup: $("new-group"),
  conversation: $("conversation"),
  convTitle: $("conv-title"),
  convSub: $("conv-sub"),
  groupMembers: $("group-members"),
  scroller: $("scroller"),
  loadOlder: $("load-older"),
  emptyState: $("empty-state"),
  messages: $("messages"),
  composer: $("composer"),
  to: $("to"),
  text: $("text"),
  send: $("send"),
  composerError: $("composer-error"),
  suggestGroup: $("suggest-group"),
  suggestGroupText: $("suggest-group-text"),
  suggestGroupCreate: $("suggest-group-create"),
  announcer: $("announcer"),
};

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Says `text` to screen readers (the polite live region). */
export function announce(text) {
  ui.announcer.textContent = "";
  // A fresh text node after a tick makes screen readers read it again.
  window.setTimeout(() => {
    ui.announcer.textContent = text;
  }, 30);
}

export function isNarrow() {
  return window.matchMedia("(max-width: 640px)").matches;
}

/** The reader's locale, for dates and times. */
export const LOCALE = (navigator.languages && navigator.languages[0]) || navigator.language || undefined;
