// The two group dialogs: "New group" (name, title, members) and a group's
// "Members" (add, remove, rename, leave), over /api/groups (PROTOCOL §10).
// The page's state stays in app.js: these call back with the group as the
// server answered it.

import { $, el } from "./dom.js";
import { api } from "./api.js";
import { GROUP_NAME_RE, SYSTEM } from "./proto.js";
import { parseGroup, slug } from "./convs.js";

/**
 * ctx: {
 *   me(): the user id,
 *   directory(): user ids that can be added (sorted),
 *   group(name): the group as last known, or null,
 *   onGroup(group, {open}): a group was created or changed,
 *   onLeft(name): the user left the group,
 *   onExpired(): the login expired (401),
 * }
 */
export function groupDialogs(ctx) {
  const create = {
    dialog: $("group-dialog"),
    form: $("group-form"),
    title: $("group-title"),
    name: $("group-name"),
    picks: $("group-member-picks"),
    error: $("group-error"),
    submit: $("group-create"),
    cancel: $("group-cancel"),
  };
  const members = {
    dialog: $("members-dialog"),
    heading: $("members-dialog-title"),
    sub: $("members-sub"),
    rename: $("members-rename"),
    title: $("members-title"),
    titleSave: $("members-title-save"),
    list: $("members-list"),
    add: $("members-add"),
    addUser: $("members-add-user"),
    addButton: $("members-add-button"),
    error: $("members-error"),
    leave: $("members-leave"),
  };
  let nameEdited = false;
  let shown = null; // the group name the members dialog shows

  const setError = (p, text) => {
    p.textContent = text;
    p.hidden = !text;
  };

  function failed(p, e) {
    if (e.status === 401) {
      create.dialog.close();
      members.dialog.close();
      ctx.onExpired();
      return;
    }
    // A version 1 server knows no /api/groups at all ("no such endpoint").
    const v1 = e.status === 404 && e.message === "no such endpoint";
    setError(p, v1 ? "This server has no groups (it speaks protocol version 1)." : e.message);
  }

  // ---- new group

  function openCreate(preselected) {
    const chosen = new Set(preselected || []);
    create.form.reset();
    nameEdited = false;
    setError(create.error, "");
    const me = ctx.me();
    const boxes = [];
    for (const user of ctx.directory()) {
      if (user === me || user === SYSTEM) continue;
      const label = el("label", "pick");
      const box = el("input");
      box.type = "checkbox";
      box.value = user;
      box.checked = chosen.has(user);
      label.append(box, el("span", "", user));
      boxes.push(label);
    }
    if (!boxes.length) boxes.push(el("p", "field-hint", "Nobody else has an account yet."));
    create.picks.replaceChildren(...boxes);
    create.submit.disabled = false;
    create.dialog.showModal();
    create.title.focus();
  }

  create.title.addEventListener("input", () => {
    if (!nameEdited) create.name.value = slug(create.title.value);
  });
  create.name.addEventListener("input", () => {
    nameEdited = create.name.value !== "";
  });
  create.cancel.addEventListener("click", () => create.dialog.close());

  create.form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const title = create.title.value.trim();
    const name = create.name.value.trim();
    if (!title || title.length > 100) {
      setError(create.error, "Give the group a title (at most 100 characters).");
      create.title.focus();
      return;
    }
    if (!GROUP_NAME_RE.test(name)) {
      setError(create.error, "The name may hold lower-case letters, digits, '.', '_' and '-' (at most 63).");
      create.name.focus();
      return;
    }
    const picked = Array.from(create.picks.querySelectorAll("input:checked"), (b) => b.value);
    create.submit.disabled = true;
    setError(create.error, "");
    try {
      const g = parseGroup(await api("POST", "/api/groups", { name, title, members: picked }));
      if (!g) throw new Error("The server's answer holds no group.");
      create.dialog.close();
      ctx.onGroup(g, { open: true });
    } catch (err) {
      if (err.status === 409) setError(create.error, `The name #${name} is taken.`);
      else failed(create.error, err);
      create.submit.disabled = false;
    }
  });

  // ---- members

  function render(g) {
    const me = ctx.me();
    const owner = g.owners.includes(me);
    members.heading.textContent = g.title;
    members.sub.textContent = `#${g.name} \u00b7 ${g.members.length} member${g.members.length === 1 ? "" : "s"}`;
    members.rename.hidden = !owner;
    if (owner && document.activeElement !== members.title) members.title.value = g.title;
    const items = g.members.map((user) => {
      const li = el("li", "member");
      li.append(el("span", "member-name", user === me ? user + " (you)" : user));
      if (g.owners.includes(user)) li.append(el("span", "member-badge", "owner"));
      if (owner && user !== me) {
        const b = el("button", "ghost small", "Remove");
        b.type = "button";
        b.setAttribute("aria-label", "Remove " + user);
        b.addEventListener("click", () => change(g.name, { remove: [user] }));
        li.append(b);
      }
      return li;
    });
    members.list.replaceChildren(...items);
    const candidates = ctx.directory().filter((u) => u !== SYSTEM && !g.members.includes(u));
    members.add.hidden = !owner || candidates.length === 0;
    members.addUser.replaceChildren(...candidates.map((u) => {
      const o = el("option", "", u);
      o.value = u;
      return o;
    }));
  }

  async function change(name, body) {
    setError(members.error, "");
    try {
      const g = parseGroup(await api("POST", `/api/groups/${encodeURIComponent(name)}/members`, body));
      if (g) {
        ctx.onGroup(g, { open: false });
        if (shown === name) render(g);
      }
    } catch (e) {
      failed(members.error, e);
    }
  }

  async function openMembers(name) {
    shown = name;
    setError(members.error, "");
    const known = ctx.group(name);
    if (known) render(known);
    members.dialog.showModal();
    try {
      const g = parseGroup(await api("GET", `/api/groups/${encodeURIComponent(name)}`));
      if (g && shown === name) {
        ctx.onGroup(g, { open: false });
        render(g);
      }
    } catch (e) {
      failed(members.error, e);
    }
  }

  members.addButton.addEventListener("click", () => {
    if (shown && members.addUser.value) change(shown, { add: [members.addUser.value] });
  });

  members.titleSave.addEventListener("click", async () => {
    const title = members.title.value.trim();
    if (!shown || !title) return;
    setError(members.error, "");
    try {
      const g = parseGroup(await api("PATCH", `/api/groups/${encodeURIComponent(shown)}`, { title }));
      if (g) {
        ctx.onGroup(g, { open: false });
        render(g);
      }
    } catch (e) {
      failed(members.error, e);
    }
  });

  members.leave.addEventListener("click", async () => {
    const name = shown;
    if (!name) return;
    setError(members.error, "");
    try {
      await api("POST", `/api/groups/${encodeURIComponent(name)}/members`, { remove: [ctx.me()] });
      members.dialog.close();
      ctx.onLeft(name);
    } catch (e) {
      failed(members.error, e);
    }
  });

  members.dialog.addEventListener("close", () => {
    shown = null;
  });

  return {
    openCreate,
    openMembers,
    /** The group changed elsewhere (an announcement): refresh an open dialog. */
    refresh(g) {
      if (shown === g.name && members.dialog.open) render(g);
    },
    closeAll() {
      if (create.dialog.open) create.dialog.close();
      if (members.dialog.open) members.dialog.close();
    },
  };
}
