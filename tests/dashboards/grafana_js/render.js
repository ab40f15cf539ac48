// Grafana's own frontend code, @grafana/data, on a panel's data frames: what a person reads.
//
// One JSON request per stdin line, one JSON answer per stdout line (a long-lived process: the
// Python tests keep one per session). Requests:
//   {"op": "panel", "dashboard": {timezone, weekStart}, "panel": {type, fieldConfig, options,
//    transformations}, "frames": [{refId, fields: [{name, type, values}]}]}
//     -> {"frames": [{refId, fields: [{name, type, values, text}]}], "stat": [text, ...]}
//   {"op": "range", "timezone", "weekStart", "from", "to", "now"}  (epoch ms of `now`)
//     -> {"from": ms, "to": ms}
// Grafana's panels do exactly these steps (public/app/features/query/state/runRequest and the
// table/stat panels): transformDataFrame(panel.transformations, frames, ctx), then
// applyFieldOverrides(fieldConfig, theme, timeZone = the dashboard's), then each cell's text is
// formattedValueToString(field.display(value)) (table) or getFieldDisplayValues(...) (stat).
// Values JSON cannot carry are tagged: {"$js": "undefined" | "NaN" | "Infinity" | "-Infinity"}.
"use strict";

// @grafana/data reads window.grafanaBootData (feature toggles) at load: a browser global; none set here.
globalThis.window = globalThis.window || {};
// the viewer's browser locale (dateTimeAsLocal formats follow navigator.languages): a Vietnamese supervisor
if (typeof globalThis.navigator === "undefined") {
  globalThis.navigator = { language: "vi-VN", languages: ["vi-VN", "vi"] };
}
const readline = require("readline");
const d = require("@grafana/data");
const { firstValueFrom } = require("rxjs");

// Every transformer @grafana/data ships, registered as Grafana's app does at start
// (public/app/features/transformers/standardTransformers.ts wraps the same objects with editors).
// (seriesToColumns is the old name of joinByField: the same id, registered once.)
d.standardTransformersRegistry.setInit(() => {
  const byId = new Map(Object.values(d.standardTransformers).map((t) => [t.id, t]));
  return [...byId.values()].map((t) => ({ id: t.id, name: t.name, description: t.description,
                                          transformation: t, editor: null }));
});

// The standard field options and how an override value is processed, as Grafana's app registers
// them (public/app/core/components/OptionsUI/registry.tsx getAllStandardFieldConfigs); the editors
// are React components a test does not need.
const prop = (id, process, extra = {}) => ({ id, path: id, name: id, process, override: null, editor: null,
                                             shouldApply: () => true, ...extra });
d.standardFieldConfigEditorRegistry.setInit(() => [
  prop("unit", d.unitOverrideProcessor),
  prop("min", d.numberOverrideProcessor),
  prop("max", d.numberOverrideProcessor),
  prop("decimals", d.numberOverrideProcessor),
  prop("displayName", d.displayNameOverrideProcessor),
  prop("noValue", d.stringOverrideProcessor),
  prop("mappings", d.valueMappingsOverrideProcessor, { defaultValue: [] }),
  prop("thresholds", d.thresholdsOverrideProcessor),
  prop("links", d.dataLinksOverrideProcessor),
  prop("filterable", d.booleanOverrideProcessor),
  prop("color", d.identityOverrideProcessor),
]);
const theme = d.createTheme();

const realNow = Date.now;
let weekStart = null;
function useWeekStart(day) {
  // moment's locale week (now/w); set once per value (moment warns on every redefinition)
  if (day !== weekStart) {
    d.setWeekStart(day);
    weekStart = day;
  }
}

function decode(v) {
  if (v && typeof v === "object" && !Array.isArray(v) && "$js" in v) {
    return { undefined: undefined, NaN: NaN, Infinity: Infinity, "-Infinity": -Infinity }[v.$js];
  }
  return v;
}

function encode(v) {
  if (v === undefined) return { $js: "undefined" };
  if (typeof v === "number" && !Number.isFinite(v)) return { $js: String(v) };
  if (Array.isArray(v)) return v.map(encode);
  return v;
}

function toFrames(frames) {
  return frames.map((f) => ({
    refId: f.refId,
    name: f.name,
    length: f.fields.length ? f.fields[0].values.length : 0,
    fields: f.fields.map((x) => ({ name: x.name, type: x.type, config: x.config || {}, labels: x.labels,
                                   values: x.values.map(decode) })),
  }));
}

async function panel(req) {
  const tz = req.dashboard.timezone;
  useWeekStart(req.dashboard.weekStart || "monday");
  const ctx = { interpolate: (s) => s };
  const frames = toFrames(req.frames);
  const data = await firstValueFrom(d.transformDataFrame(req.panel.transformations || [], frames, ctx));
  const fieldConfig = req.panel.fieldConfig || { defaults: {}, overrides: [] };
  const shown = d.applyFieldOverrides({ data, fieldConfig, theme, timeZone: tz, replaceVariables: (s) => s });
  const out = {
    frames: shown.map((f) => ({
      refId: f.refId,
      fields: f.fields.map((x) => ({
        name: d.getFieldDisplayName(x, f, shown),
        type: x.type,
        values: Array.from(x.values, encode),
        text: Array.from(x.values, (v) => d.formattedValueToString(x.display(v))),
      })),
    })),
  };
  if (req.panel.type === "stat") {
    const reduceOptions = (req.panel.options || {}).reduceOptions || {};
    // the stat panel reads the frames after applyFieldOverrides (PanelQueryRunner withFieldConfig)
    const values = d.getFieldDisplayValues({ fieldConfig, reduceOptions, data: shown, theme, timeZone: tz,
                                             replaceVariables: (s) => s });
    out.stat = values.map((v) => d.formattedValueToString(v.display));
  }
  return out;
}

function range(req) {
  // a panel's relative time (timeFrom "now/d", "now/w", "7d") as Grafana evaluates it in the dashboard's zone
  Date.now = () => req.now;
  try {
    useWeekStart(req.weekStart || "monday");
    const info = d.rangeUtil.describeTextRange(req.from);
    const from = d.dateMath.parse(info.from, false, req.timezone);
    const to = d.dateMath.parse(req.to || info.to, true, req.timezone);
    return { from: from.valueOf(), to: to.valueOf() };
  } finally {
    Date.now = realNow;
  }
}

const rl = readline.createInterface({ input: process.stdin, terminal: false });
let chain = Promise.resolve();
rl.on("line", (line) => {
  chain = chain.then(async () => {
    let answer;
    try {
      const req = JSON.parse(line);
      answer = req.op === "range" ? range(req) : await panel(req);
    } catch (err) {
      answer = { error: String((err && err.stack) || err) };
    }
    process.stdout.write(JSON.stringify(answer) + "\n");
  });
});
