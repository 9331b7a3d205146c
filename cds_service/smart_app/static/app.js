// The SMART app: after the launch, ask the service for the evidence and the plan (it reads the
// record with the user's token, from the allowlisted FHIR server only), show them, let the
// clinician adjust Day 0, the phase windows and what is done, and save the CarePlan with the
// user's token: a conditional create on the plan's identifier (the one direct-write uses), or
// an update of the plan already saved, so there is never a second plan.
"use strict";

const DAY = 86400000;
let client = null;
let view = null;
let state = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  return node;
}

function parseDay(iso) {
  const [y, m, d] = iso.slice(0, 10).split("-").map(Number);
  return Date.UTC(y, m - 1, d);
}

function isoDay(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}

function words(code) {
  return String(code || "").replaceAll("_", " ");
}

const MAX_WEEK = 104;

function clampWeek(value) {
  const number = Math.round(Number(value));
  return Number.isFinite(number) ? Math.min(Math.max(number, 0), MAX_WEEK) : 0;
}

function source(item) {
  return item && item.source ? " (" + item.source + ")" : "";
}

// ---------------------------------------------------------------- evidence
// Each item links to the resource it came from: a button that shows that resource, read from
// the FHIR server with the user's token.
function evidenceItem(label, item) {
  const li = el("li", {text: label});
  const ref = item && item.source;
  if (ref && /^[A-Za-z]+\/[A-Za-z0-9.\-]{1,256}$/.test(ref)) {
    const button = el("button", {type: "button", class: "link", "aria-expanded": "false", text: ref});
    const shown = el("pre", {hidden: ""});
    button.addEventListener("click", function () {
      const open = shown.hidden;
      shown.hidden = !open;
      button.setAttribute("aria-expanded", String(open));
      if (open && !shown.textContent) {
        shown.textContent = "Reading " + ref + "...";
        client.request(ref).then(function (resource) {
          shown.textContent = JSON.stringify(resource, null, 2);
        }).catch(function (error) {
          shown.textContent = "Could not read " + ref + ": " + error.message;
        });
      }
    });
    li.append(" (", button, ")", shown);
  }
  return li;
}

function showEvidence() {
  const list = document.getElementById("evidence-items");
  list.replaceChildren();
  const a = view.assessment || {};
  for (const q of a.pains || []) {
    list.append(evidenceItem("Pain: " + q.pain.label + ", " + q.pain.side + ", since " + q.since, q.pain));
  }
  if (a.runner) list.append(evidenceItem("Runner: " + (a.runner.text || words(a.runner.kind)) + (a.runner.when ? ", " + a.runner.when : ""), a.runner));
  for (const r of a.risks || []) {
    const label = view.riskLabels[r.category] || r.category;
    let value = "";
    if (r.value !== null && r.value !== undefined) value = ": " + r.value;
    if (r.percentile !== null && r.percentile !== undefined) value += ", " + Math.round(r.percentile) + "th percentile for age";
    if (r.percent_of_median !== null && r.percent_of_median !== undefined) value += ", " + Math.round(r.percent_of_median) + "% of median";
    list.append(evidenceItem("Risk factor: " + label + value + (r.when ? ", " + r.when : ""), r));
  }
  const c = view.confirmation;
  if (c && c.report) list.append(evidenceItem("MRI: " + c.report.label + (c.report.quote ? ": \u201c" + c.report.quote + "\u201d" : ""), c.report));
  if (c && c.diagnosis) list.append(evidenceItem("Diagnosis: " + c.diagnosis.label, c.diagnosis));
  if (!list.children.length) list.append(el("li", {text: "The rule has nothing to show for this record (" + words(view.kind) + ")."}));
  const note = document.getElementById("evidence-note");
  note.textContent = view.kind === "suspect"
    ? "Suspected sacral stress injury: MRI is the test. No rehab plan until MRI confirms it."
    : view.kind === "confirm_first"
      ? "The MRI report reads as a sacral stress injury, but no diagnosis is recorded as confirmed: confirm it in the chart for a plan."
      : "";
  document.getElementById("evidence").hidden = false;
}

// ---------------------------------------------------------------- plan state
function parts(description) {
  const found = {};
  const names = [["goals", "Goals: "], ["allowed", "Allowed and encouraged: "], ["avoid", "Avoid: "], ["criteria", "Move on when: "]];
  for (let n = 0; n < names.length; n++) {
    const start = description.indexOf(names[n][1]);
    if (start < 0) continue;
    let end = description.length;
    for (let m = n + 1; m < names.length; m++) {
      const next = description.indexOf(names[m][1]);
      if (next > start) { end = next; break; }
    }
    found[names[n][0]] = description.slice(start + names[n][1].length, end).trim();
  }
  return found;
}

function stateFrom(plan) {
  const day0 = parseDay((plan.period && plan.period.start) || view.confirmation.day0);
  return {
    plan: plan,
    day0: day0,
    status: plan.status === "active" ? "active" : "draft",
    activities: (plan.activity || []).map(function (activity) {
      const detail = activity.detail || {};
      const period = detail.scheduledPeriod || {};
      return {
        name: (detail.code && detail.code.text) || "Activity",
        restriction: detail.doNotPerform === true,
        start: period.start ? Math.round((parseDay(period.start) - day0) / DAY) : 0,
        end: period.end ? Math.round((parseDay(period.end) - day0) / DAY) : null,
        done: detail.status === "completed",
        description: detail.description || "",
      };
    }),
  };
}

function stopSentence(plan) {
  const text = plan.description || "";
  const at = text.indexOf("Stop and re-assess");
  return at >= 0 ? text.slice(at) : "";
}

// ---------------------------------------------------------------- timeline
function drawTimeline() {
  const host = document.getElementById("timeline");
  const width = 760, left = 260, row = 34, top = 30;
  const lastDay = Math.max(182, ...state.activities.map((a) => (a.end === null ? a.start : a.end)));
  const weeks = Math.ceil(lastDay / 7) + 1;
  const scale = (width - left - 20) / (weeks * 7);
  const height = top + row * state.activities.length + 20;
  const chart = svg("svg", {viewBox: "0 0 " + width + " " + height, width: "100%", "aria-hidden": "true", focusable: "false"});
  for (let w = 0; w <= weeks; w += 2) {
    const x = left + w * 7 * scale;
    chart.append(svg("line", {x1: x, x2: x, y1: top - 6, y2: height - 16, stroke: "#d0d0d0"}));
    const label = svg("text", {x: x, y: top - 10, "text-anchor": "middle", "font-size": "11", fill: "#333333"});
    label.textContent = "wk " + w;
    chart.append(label);
  }
  state.activities.forEach(function (a, n) {
    const y = top + n * row;
    const name = svg("text", {x: 4, y: y + 20, "font-size": "12", fill: "#1a1a1a"});
    name.textContent = a.name.length > 40 ? a.name.slice(0, 39) + "\u2026" : a.name;
    chart.append(name);
    const x = left + a.start * scale;
    const end = a.end === null ? width - 20 : left + a.end * scale;
    const bar = svg("rect", {x: x, y: y + 6, width: Math.max(end - x, 2), height: 20, rx: 3,
      fill: a.restriction ? "#8a1c1c" : a.done ? "#2e6b30" : "#1f5fbf"});
    chart.append(bar);
    if (a.end === null) {
      const open = svg("text", {x: width - 24, y: y + 20, "text-anchor": "end", "font-size": "11", fill: "#ffffff"});
      open.textContent = "until cleared \u2192";
      chart.append(open);
    }
  });
  const today = (Date.now() - state.day0) / DAY;
  if (today >= 0 && today <= weeks * 7) {
    const x = left + today * scale;
    chart.append(svg("line", {x1: x, x2: x, y1: top - 6, y2: height - 10, stroke: "#c00000", "stroke-width": 2}));
    const label = svg("text", {x: x + 3, y: height - 2, "font-size": "11", fill: "#c00000"});
    label.textContent = "today";
    chart.append(label);
  }
  host.replaceChildren(chart);
}

function drawTable() {
  const body = document.querySelector("#timeline-table tbody");
  body.replaceChildren();
  for (const a of state.activities) {
    const name = a.restriction ? "Do not: " + a.name : a.name;
    const to = a.end === null ? "until the clinician clears it" : isoDay(state.day0 + a.end * DAY);
    const weeks = "week " + Math.floor(a.start / 7) + (a.end === null ? " on" : " to " + Math.ceil(a.end / 7));
    body.append(el("tr", {}, el("th", {scope: "row", text: name}), el("td", {text: isoDay(state.day0 + a.start * DAY)}),
      el("td", {text: to}), el("td", {text: weeks}), el("td", {text: a.restriction ? "not applicable" : a.done ? "yes" : "no"})));
  }
  const today = Math.floor((Date.now() - state.day0) / DAY);
  document.getElementById("today").textContent = today < 0
    ? "Day 0 is in the future (" + isoDay(state.day0) + ")."
    : "Today is day " + today + " (week " + Math.floor(today / 7) + ") after Day 0 (" + isoDay(state.day0) + ").";
}

function drawPhases() {
  const host = document.getElementById("phases");
  host.replaceChildren();
  state.activities.forEach(function (a, n) {
    const p = parts(a.description);
    const details = el("details", {}, el("summary", {text: a.name}));
    if (p.goals) details.append(el("p", {text: "Goals: " + p.goals}));
    if (p.allowed) details.append(el("p", {text: "Allowed and encouraged: " + p.allowed}));
    if (p.avoid) details.append(el("p", {text: "Avoid: " + p.avoid}));
    if (p.criteria) details.append(el("p", {text: "Move on when: " + p.criteria}));
    if (!p.goals && a.description) details.append(el("p", {text: a.description}));
    if (a.restriction) {
      details.append(el("p", {text: "It ends when the clinician clears return to running, never on a date."}));
      host.append(details);
      return;
    }
    const start = el("input", {type: "number", min: "0", max: String(MAX_WEEK), value: String(Math.round(a.start / 7)), id: "start-" + n, "aria-label": a.name + ": starts in week"});
    start.addEventListener("change", function () {
      a.start = clampWeek(start.value) * 7;
      if (a.end !== null && a.end < a.start) a.end = a.start;
      start.value = String(a.start / 7);
      redraw();
    });
    details.append(el("label", {}, "Starts in week ", start));
    if (a.end !== null) {
      const end = el("input", {type: "number", min: "0", max: String(MAX_WEEK), value: String(Math.round(a.end / 7)), id: "end-" + n, "aria-label": a.name + ": ends in week"});
      end.addEventListener("change", function () {
        a.end = Math.max(clampWeek(end.value) * 7, a.start);
        end.value = String(Math.round(a.end / 7));
        redraw();
      });
      details.append(" ", el("label", {}, "ends in week ", end));
    }
    const done = el("input", {type: "checkbox", id: "done-" + n, "aria-label": a.name + ": done"});
    done.checked = a.done;
    done.addEventListener("change", function () { a.done = done.checked; redraw(); });
    details.append(" ", el("label", {}, done, " done"));
    host.append(details);
  });
}

function drawSheet() {
  const phases = document.getElementById("sheet-phases");
  phases.replaceChildren();
  for (const a of state.activities) {
    if (a.restriction) continue;
    const p = parts(a.description);
    const item = el("li", {text: a.name + " (from about " + isoDay(state.day0 + a.start * DAY) + "): " + (p.allowed || p.goals || "")});
    if (p.criteria) item.append(el("br"), "Move on when: " + p.criteria);
    phases.append(item);
  }
  document.getElementById("sheet-printed").textContent = "Printed " + isoDay(Date.now()) + ". Move on by how you feel and by these checks, not by the dates.";
  const restriction = state.activities.find((a) => a.restriction);
  document.getElementById("sheet-avoid").textContent = restriction ? restriction.description : "";
  document.getElementById("sheet-call").textContent = stopSentence(state.plan);
}

function redraw() {
  drawTimeline();
  drawTable();
  drawSheet();
}

// ---------------------------------------------------------------- save
function resource() {
  const plan = JSON.parse(JSON.stringify(state.plan));
  plan.status = state.status;
  delete plan.text;  // the generated narrative told the proposed dates: not the edited ones
  const last = Math.max(...state.activities.map((a) => (a.end === null ? a.start : a.end)));
  plan.period = Object.assign({}, plan.period, {start: isoDay(state.day0), end: isoDay(state.day0 + last * DAY)});
  plan.activity.forEach(function (activity, n) {
    const a = state.activities[n];
    const period = {start: isoDay(state.day0 + a.start * DAY)};
    if (a.end !== null) period.end = isoDay(state.day0 + a.end * DAY);
    activity.detail.scheduledPeriod = period;
    activity.detail.status = a.done ? "completed" : "not-started";
  });
  return plan;
}

function problem(response, body) {
  const issue = body && body.issue && body.issue[0];
  return (issue && ((issue.details && issue.details.text) || issue.diagnostics)) || "HTTP " + response.status;
}

function save() {
  const button = document.getElementById("save");
  const status = document.getElementById("plan-state");
  const plan = resource();
  const id = view.planIdentifier;
  let request;
  if (view.savedPlan) {
    plan.id = view.savedPlan.split("/")[1];
    const version = state.plan.meta && state.plan.meta.versionId;
    request = {url: view.savedPlan, method: "PUT", body: JSON.stringify(plan),
      headers: Object.assign({"Content-Type": "application/fhir+json"}, version ? {"If-Match": "W/\"" + version + "\""} : {})};
  } else {
    request = {url: "CarePlan", method: "POST", body: JSON.stringify(plan),
      headers: {"Content-Type": "application/fhir+json", "If-None-Exist": "identifier=" + id.system + "|" + id.value}};
  }
  button.disabled = true;  // one save at a time: a double click sends one request
  status.textContent = "Saving...";
  request.includeResponse = true;  // fhirclient: {body, response}, to tell 200 from 201
  return client.request(request).then(function (result) {
    const response = result.response, saved = result.body;
    if (!view.savedPlan && response.status === 200) {
      status.textContent = "Not saved: a plan for this injury is already in the chart (saved elsewhere). Reload to see it; nothing was changed.";
      return;
    }
    state.plan = saved;
    view.savedPlan = "CarePlan/" + saved.id;
    status.textContent = "Saved in the chart (" + saved.status + ") as " + view.savedPlan + ".";
  }).catch(function (error) {
    const code = error.status || (error.response && error.response.status);
    if (code === 401 || code === 403) status.textContent = "Not saved: this sign-in may not write care plans (HTTP " + code + ").";
    else if (code === 409 || code === 412) status.textContent = "Not saved: the plan was changed in the chart since it was opened. Reload to see it.";
    else if (code === 404 || code === 410) status.textContent = "Not saved: the saved plan was deleted from the chart. Reload.";
    else status.textContent = "Not saved: " + error.message;
  }).finally(function () {
    button.disabled = false;
  });
}

function showPlan(plan) {
  if (!plan) return;
  state = stateFrom(plan);
  document.getElementById("plan-state").textContent = view.savedPlan
    ? "Saved in the chart as " + view.savedPlan + " (" + plan.status + "). Changes are saved to the same plan."
    : "Proposed; not saved yet.";
  document.getElementById("stop").textContent = stopSentence(plan);
  const day0 = document.getElementById("day0");
  day0.value = isoDay(state.day0);
  day0.addEventListener("change", function () { if (day0.value) { state.day0 = parseDay(day0.value); redraw(); } });
  const status = document.getElementById("save-status");
  status.value = state.status;
  status.addEventListener("change", function () { state.status = status.value; });
  document.getElementById("save").addEventListener("click", save);
  document.getElementById("print").addEventListener("click", function () { window.print(); });
  drawPhases();
  redraw();
  document.getElementById("plan").hidden = false;
}

FHIR.oauth2.ready().then(function (ready) {
  client = ready;
  return fetch("api/view", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({iss: client.state.serverUrl, patient: client.patient.id, access_token: client.state.tokenResponse.access_token}),
  });
}).then(function (response) {
  if (response.ok) return response.json();
  return response.json().catch(function () { return null; }).then(function (body) {
    throw new Error(problem(response, body));
  });
}).then(function (answer) {
  view = answer;
  document.getElementById("status").textContent = "";
  showEvidence();
  if (view.savedPlan) return client.request(view.savedPlan).then(showPlan);
  return showPlan(view.plan);
}).catch(function (error) {
  document.getElementById("status").textContent = "Could not load: " + error.message;
});
