// The app: after the SMART launch, ask the service for the evidence and the plan (it reads the
// record with the user's token, from the allowlisted FHIR server only), and show them.
"use strict";

function text(tag, value, cls) {
  const element = document.createElement(tag);
  element.textContent = value;
  if (cls) element.className = cls;
  return element;
}

function source(item) {
  return item && item.source ? " (" + item.source + ")" : "";
}

function showEvidence(view) {
  const list = document.getElementById("evidence-items");
  const a = view.assessment || {};
  for (const q of a.pains || []) {
    list.append(text("li", "Pain: " + q.pain.label + ", " + q.pain.side + ", since " + q.since + source(q.pain)));
  }
  if (a.runner) list.append(text("li", "Runner: " + (a.runner.text || a.runner.kind) + source(a.runner)));
  for (const r of a.risks || []) {
    const label = view.riskLabels[r.category] || r.category;
    list.append(text("li", "Risk factor: " + label + (r.when ? ", " + r.when : "") + source(r)));
  }
  const c = view.confirmation;
  if (c && c.report) list.append(text("li", "MRI: " + c.report.label + source(c.report)));
  if (!list.children.length) list.append(text("li", "No evidence for a sacral stress injury in this record (" + view.kind + ")."));
  document.getElementById("evidence").hidden = false;
}

function showPlan(view) {
  if (!view.plan) return;
  document.getElementById("plan-state").textContent = view.savedPlan
    ? "Saved in the chart as " + view.savedPlan + "."
    : "Not saved yet.";
  const phases = document.getElementById("plan-phases");
  for (const activity of view.plan.activity || []) {
    const detail = activity.detail || {};
    const period = detail.scheduledPeriod || {};
    phases.append(text("li", (detail.description || "").split(". ")[0] + " (" + (period.start || "") + " to " + (period.end || "until cleared") + ")"));
  }
  document.getElementById("plan").hidden = false;
}

FHIR.oauth2.ready().then(function (client) {
  return fetch("api/view", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({
      iss: client.state.serverUrl,
      patient: client.patient.id,
      access_token: client.state.tokenResponse.access_token,
    }),
  }).then(function (response) {
    if (!response.ok) throw new Error("the service answered " + response.status);
    return response.json();
  });
}).then(function (view) {
  document.getElementById("status").textContent = "";
  showEvidence(view);
  showPlan(view);
}).catch(function (error) {
  document.getElementById("status").textContent = "Could not load: " + error.message;
});
