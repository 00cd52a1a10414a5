// The chat page: a small client of the session API (/api/chat/...), the same API the terminal chat uses.
"use strict";
const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) k.startsWith("on") ? node.addEventListener(k.slice(2), v) : node.setAttribute(k, v);
  node.append(...children);
  return node;
};

async function api(path, body) {
  const busy = $("#busy");
  if (busy) busy.textContent = "working …";
  const response = await fetch(path, body === undefined ? {} : {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
  });
  const data = await response.json();
  if (busy) busy.textContent = "";
  if (!response.ok) { alert(data.error || JSON.stringify(data.detail)); return null; }
  return data;
}

async function listSessions() {
  const list = $("#sessions");
  list.replaceChildren(...(await api("/api/chat/sessions")).map((s) =>
    el("li", {}, el("a", {href: `#${s.id}`}, s.id), ` ${s.status} · ${s.input}`)));
}

function render(view) {
  if (!view) return;
  // replaceState, not location.hash: a hashchange would fetch and render the same view a second time.
  if (location.hash.slice(1) !== view.session) history.replaceState(null, "", `#${view.session}`);
  const send = async (turn) => render(await api(`/api/chat/sessions/${view.session}/turn`, turn));
  const root = $("#session");
  const head = el("div", {class: "card"}, el("h2", {}, `Session ${view.session}: ${view.input}`),
    el("p", {class: "muted"}, `step ${view.steps.length - 1} · round ${view.iteration} · ${view.status}`), el("p", {id: "busy"}));
  if (view.status === "accepted") {
    head.append(el("p", {}, el("b", {}, "accepted: "), view.accepted));
  }
  const candidates = el("div", {class: "card", id: "candidates"}, el("h3", {}, "candidates"));
  for (const c of view.candidates) {
    const scores = Object.entries(c.scores).map(([m, v]) => el("span", {class: "score"}, `${m} ${v.toFixed(3)}`));
    const body = el("div", {class: "body"}, el("p", {class: "text"}, c.text), el("p", {}, ...scores));
    if (view.status === "open") body.append(
      el("button", {class: "accept", onclick: () => send({action: "accept", candidate: c.index})}, "accept"),
      el("button", {onclick: () => { const t = prompt("Edit the prompt", c.text); if (t) send({action: "edit", candidate: c.index, text: t}); }}, "edit"));
    const row = el("div", {class: "candidate"});
    if (c.video) {
      const video = el("video", {src: `/chat/files/${c.video}`, loop: "", autoplay: "", playsinline: "", controls: "", width: "160", height: "160"});
      video.muted = true;  // the attribute alone does not mute a video made by script, and autoplay needs muted
      row.append(video);
    }
    row.append(body);
    candidates.append(row);
  }
  if (view.note) candidates.append(el("p", {class: "error"}, view.note));
  const parts = [head, candidates];
  if (view.status === "open") {
    const change = el("form", {class: "card", onsubmit: (e) => { e.preventDefault(); send({action: "change", text: e.target.text.value}); }},
      el("input", {name: "text", size: "50", placeholder: "ask for a change: more cinematic, keep the red car, shorter"}),
      el("button", {}, "ask"));
    if (view.can_generate) change.append(el("button", {type: "button", class: "generate", onclick: () => send({action: "generate"})}, "generate and score"));
    parts.push(change);
  }
  const modifiers = el("div", {class: "card"}, el("h3", {}, "retrieved modifiers"));
  const table = el("table", {}, el("tr", {}, el("th", {}, "kind"), el("th", {}, "modifier"), el("th", {}, "similarity"), el("th", {}, "")));
  for (const m of view.modifiers) {
    const flags = ["merged", "pinned", "banned"].filter((f) => m[f]).map((f) => el("span", {class: "flag"}, f));
    const actions = view.status !== "open" ? [] : ["pin", "ban"].filter((a) => !m[`${a}ned`]).map((a) =>
      el("button", {onclick: () => send({action: a, text: m.text})}, a));
    table.append(el("tr", {}, el("td", {}, m.kind), el("td", {}, m.text, ...flags), el("td", {class: "num"}, m.score.toFixed(2)), el("td", {}, ...actions)));
  }
  modifiers.append(table);
  const steps = el("div", {class: "card"}, el("h3", {}, "steps"));
  const list = el("ol", {start: "0"});
  for (const s of view.steps) {
    list.append(el("li", {}, `round ${s.iteration}, after ${s.after} `,
      el("button", {class: "undo", onclick: async () => render(await api(`/api/chat/sessions/${view.session}/undo`, {step: s.step}))}, "undo to here")));
  }
  steps.append(list);
  parts.push(modifiers, steps);
  root.replaceChildren(...parts);
  listSessions();
}

async function openFromHash() {
  const id = location.hash.slice(1);
  if (id) render(await api(`/api/chat/sessions/${id}`));
}

$("#new").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("#session").replaceChildren(el("p", {id: "busy"}, "running Stage 1 …"));
  render(await api("/api/chat/sessions", {prompt: e.target.prompt.value}));
});
window.addEventListener("hashchange", openFromHash);
listSessions();
openFromHash();
