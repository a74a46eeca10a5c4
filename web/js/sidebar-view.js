// The conversation list's items: a dot (or "#" for a group), the name, a
// line under it (the newest message, or what the conversation is), the
// unread count; their order; moving through them with the keyboard (a
// listbox: arrows, Home, End; Enter opens and goes to the message box,
// Space opens).

import { el } from "./dom.js";
import { compareSidebar } from "./convs.js";
import { groupName, isGroupId, SYSTEM } from "./proto.js";

export function makeItem(id) {
  const li = el("li", "contact");
  li.dataset.conv = id;
  if (isGroupId(id)) {
    li.dataset.group = groupName(id);
    li.classList.add("contact-group");
  } else {
    li.dataset.user = id;
  }
  li.tabIndex = 0;
  li.setAttribute("role", "option");
  if (id === SYSTEM) li.classList.add("contact-system");
  const dot = el("span", isGroupId(id) ? "dot group" : "dot offline", isGroupId(id) ? "#" : undefined);
  dot.setAttribute("aria-hidden", "true");
  const names = el("span", "contact-names");
  const name = el("span", "contact-name");
  const sub = el("span", "contact-sub");
  names.append(name, sub);
  const unread = el("span", "unread", "");
  unread.hidden = true;
  unread.setAttribute("aria-hidden", "true");
  li.append(dot, names, unread);
  return { id, li, dot, name, sub, unread, lastTs: null, preview: "" };
}

/** look: {name, sub, apart, unread (count), online (null for a group),
 * state (said to screen readers: "online", "group"...)} */
export function render(it, look) {
  it.name.textContent = look.name;
  it.li.classList.toggle("contact-self", look.apart);
  it.sub.textContent = look.sub;
  it.sub.hidden = !look.sub;
  it.unread.textContent = look.unread > 0 ? String(look.unread) : "";
  it.unread.hidden = look.unread === 0;
  if (look.online !== null) {
    it.dot.classList.toggle("online", look.online);
    it.dot.classList.toggle("offline", !look.online);
  }
  const parts = [look.name];
  if (look.state) parts.push(look.state);
  if (look.unread > 0) parts.push(look.unread + " unread");
  it.li.setAttribute("aria-label", parts.join(", "));
}

export function select(it, selected) {
  it.li.setAttribute("aria-selected", selected ? "true" : "false");
  it.li.classList.toggle("selected", selected);
}

/** Puts the item where compareSidebar says, keeping keyboard focus on it. */
export function place(listEl, it, itemOf, me) {
  const key = { id: it.id, lastTs: it.lastTs, me };
  let before = null;
  for (const li of listEl.children) {
    const other = itemOf(li.dataset.conv);
    if (other && other !== it && compareSidebar(key, { id: other.id, lastTs: other.lastTs, me }) < 0) {
      before = li;
      break;
    }
  }
  if (it.li.parentNode === listEl && it.li.nextElementSibling === before) return;
  const hadFocus = document.activeElement === it.li;
  listEl.insertBefore(it.li, before);
  if (hadFocus) it.li.focus();
}

/** Keyboard use of the list; `open(id, key)` on Enter or Space. */
export function keyboard(listEl, open) {
  listEl.addEventListener("keydown", (e) => {
    const li = e.target.closest("li[data-conv]");
    if (!li) return;
    if (e.key === "Enter" || e.key === " " || e.key === "Spacebar") {
      e.preventDefault();
      open(li.dataset.conv, e.key);
      return;
    }
    const items = Array.from(listEl.children);
    const i = items.indexOf(li);
    let next = null;
    if (e.key === "ArrowDown" || e.key === "ArrowRight") next = items[i + 1];
    else if (e.key === "ArrowUp" || e.key === "ArrowLeft") next = items[i - 1];
    else if (e.key === "Home") next = items[0];
    else if (e.key === "End") next = items[items.length - 1];
    if (next) {
      e.preventDefault();
      next.focus();
      next.scrollIntoView({ block: "nearest", inline: "nearest" });
    }
  });
}
