// What the page keeps in the browser, per user: the unsent outbox, the open
// conversation, drafts and unread counts. `backend` is a Storage
// (localStorage); every call survives a backend that throws (private
// windows, storage disabled or full): the page then works for this load.

export const KEY_CLIENT = "edgeim.clientName";
export const KEY_USER = "edgeim.userId";
export const outboxKey = (user) => "edgeim.outbox." + user;
export const openKey = (user) => "edgeim.open." + user;
export const unreadKey = (user) => "edgeim.unread." + user;
/** The draft of one conversation; conversation "" is the composer with no
 * conversation open (its To field is kept too). */
export const draftKey = (user, conv) => "edgeim.draft." + user + "." + conv;
const draftPrefix = (user) => "edgeim.draft." + user + ".";

export function makeStore(backend) {
  const store = {
    get(key) {
      try {
        return backend ? backend.getItem(key) : null;
      } catch (_) {
        return null;
      }
    },
    set(key, value) {
      try {
        if (backend) backend.setItem(key, value);
      } catch (_) {
        /* storage full or disabled */
      }
    },
    remove(key) {
      try {
        if (backend) backend.removeItem(key);
      } catch (_) {
        /* ignore */
      }
    },
    getJSON(key) {
      const raw = store.get(key);
      if (raw === null) return null;
      try {
        return JSON.parse(raw);
      } catch (_) {
        store.remove(key);
        return null;
      }
    },
    setJSON(key, value) {
      store.set(key, JSON.stringify(value));
    },
    /** A draft {to, text}; empty ones are not stored. */
    saveDraft(user, conv, draft) {
      const text = draft && typeof draft.text === "string" ? draft.text : "";
      const to = draft && typeof draft.to === "string" ? draft.to : "";
      if (!text && !(conv === "" && to)) store.remove(draftKey(user, conv));
      else store.setJSON(draftKey(user, conv), conv === "" ? { to, text } : { text });
    },
    loadDraft(user, conv) {
      const d = store.getJSON(draftKey(user, conv));
      return {
        to: d && typeof d.to === "string" ? d.to : "",
        text: d && typeof d.text === "string" ? d.text : "",
      };
    },
    /** Every draft of `user` (on logout: the next person at this browser
     * should not find them). */
    dropDrafts(user) {
      try {
        if (!backend) return;
        const keys = [];
        for (let i = 0; i < backend.length; i++) {
          const k = backend.key(i);
          if (k && k.startsWith(draftPrefix(user))) keys.push(k);
        }
        for (const k of keys) backend.removeItem(k);
      } catch (_) {
        /* ignore */
      }
    },
  };
  return store;
}
