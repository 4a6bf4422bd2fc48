// The genserve page: every request goes to the public JSON API, the same one curl uses.

const API = new URL("../", document.baseURI); // the service root, under whatever prefix serves /ui/
const AUTOREGRESSIVE = new Set(["pixelcnn", "pixelrnn"]);
const KNOB_FAMILIES = { truncation: new Set(["dcgan", "wgan-gp"]), temperature: AUTOREGRESSIVE };
const MAX_UPLOAD_BYTES = 8 * 1024 * 1024;
const MAX_LOGGED_CALLS = 50;
const EVENT_STREAM = "text/event-stream";
const KEY_STORAGE = "genserve.apiKey";

const $ = (id) => document.getElementById(id);
const state = { models: [], model: null, upload: null, ends: { start: null, end: null } };
const tickets = {};
const controllers = {}; // each section's call in flight, to abort

// ---------------------------------------------------------------- talking to the API

// JSON where BigInt seeds stay exact (seeds go up to 2**64, past a double's 2**53).
function toJson(body) {
  const marked = JSON.stringify(body, (_, v) => (typeof v === "bigint" ? `\u0000${v}` : v));
  return marked.replace(/"\\u0000(\d+)"/g, "$1");
}

function shellQuote(text) {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replaceAll("'", "'\\''")}'`;
}

// The command that makes the same call; a key in use is named by the client's variable, not shown.
function curlFor(path, body, accept) {
  const url = new URL(path, API).href;
  const streamed = accept === EVENT_STREAM;
  const parts = [`curl -s${streamed ? "N" : ""} -X POST ${shellQuote(url)} -H 'Content-Type: application/json'`];
  if (accept) parts.push(`-H 'Accept: ${accept}'`);
  if (apiKey()) parts.push(`-H "Authorization: Bearer $GENSERVE_API_KEY"`);
  parts.push(`-d ${shellQuote(toJson(body))}`);
  if (accept === "image/png") parts.push("-o grid.png");
  return parts.join(" ");
}

// The API key lives in this tab's sessionStorage only: it is gone when the tab closes.
const apiKey = () => sessionStorage.getItem(KEY_STORAGE) ?? "";

function useKey() {
  const key = $("api-key").value.trim();
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
  $("api-key").removeAttribute("aria-invalid");
  say($("key-status"), key ? "key in use" : "no key");
  loadModels();
}

function askForKey(data) {
  const text = apiKey()
    ? `The service refused this API key (${data.error}): enter a valid key and press Use key.`
    : "This service needs an API key: enter yours above and press Use key.";
  say($("key-status"), text, true);
  $("api-key").setAttribute("aria-invalid", "true");
}

// One server-sent event stream: progress and partials go to onEvent as they come; the last
// event, result or error, is returned as [ok, its data].
async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const name = /^event: ?(.*)$/m.exec(block)?.[1] ?? "message";
      const data = JSON.parse(/^data: ?(.*)$/m.exec(block)?.[1] ?? "null");
      if (name === "result") return [true, data];
      if (name === "error") return [false, data];
      onEvent(name, data);
    }
  }
  return [false, { error: "the event stream ended without a result", code: "stream_ended" }];
}

// A call to the API. The answer is read as it comes: JSON, a PNG (data: {png, headers}) or,
// asked for with onEvent, server-sent events. An aborted call answers {cancelled: true}.
async function call(method, path, body, { accept, onEvent, signal } = {}) {
  const init = { method, headers: {}, signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = toJson(body);
  }
  if (accept) init.headers.Accept = accept;
  if (apiKey()) init.headers.Authorization = `Bearer ${apiKey()}`;
  const started = performance.now();
  let status;
  let ok;
  let data;
  let cancelled = false;
  try {
    const response = await fetch(new URL(path, API), init);
    status = response.status;
    ok = response.ok;
    const type = response.headers.get("content-type") ?? "";
    if (ok && type.startsWith(EVENT_STREAM)) {
      [ok, data] = await readEvents(response, onEvent);
    } else if (ok && type.startsWith("image/png")) {
      data = { png: (await readAsDataUrl(await response.blob())).split(",")[1], headers: response.headers };
    } else {
      const text = await response.text();
      try {
        data = JSON.parse(text);
      } catch {
        data = { error: text.slice(0, 300) || response.statusText, code: "not_json" };
      }
    }
  } catch (err) {
    ok = false;
    cancelled = err.name === "AbortError";
    if (!cancelled) status = 0;
    data = cancelled
      ? { error: "cancelled", code: "cancelled" }
      : { error: `the service did not answer (${err.message})`, code: "network_error" };
  }
  const ms = performance.now() - started;
  logCall(method, path, cancelled ? "cancelled" : status, ms, ok);
  if (status === 401) askForKey(data);
  else if (ok && apiKey()) say($("key-status"), "key in use");
  return { ok, status, data, ms, cancelled };
}

// One call for one section: its status line shows the latency, or the API's error as it came.
// A newer call of the section aborts this one. With showPartial the call streams its rows: the
// section's progress bar follows them and its Cancel button aborts the call.
async function run(section, statusEl, method, path, body, { accept, showPartial } = {}) {
  const ticket = (tickets[section.id] = (tickets[section.id] ?? 0) + 1);
  controllers[section.id]?.abort();
  const controller = (controllers[section.id] = new AbortController());
  section.setAttribute("aria-busy", "true");
  const rows = showPartial ? watchRows(section, showPartial) : null;
  const result = await call(method, path, body, {
    accept: showPartial ? EVENT_STREAM : accept,
    onEvent: rows?.onEvent,
    signal: controller.signal,
  });
  if (ticket !== tickets[section.id]) return null; // a newer call of this section won
  delete controllers[section.id];
  section.setAttribute("aria-busy", "false");
  rows?.end(result);
  const head = `${method} /${path} · ${result.cancelled ? "cancelled" : result.status || "no answer"} · ${formatMs(result.ms)}`;
  if (result.cancelled) {
    say(statusEl, `${head} · the service stopped its work; ask again when you like.`);
    return null;
  }
  if (result.ok) {
    say(statusEl, head);
    return result.data;
  }
  const hint = result.status === 401 ? " · enter an API key above" : "";
  say(statusEl, `${head} · ${result.data.code}: ${result.data.error}${hint}`, true);
  return null;
}

// The section's progress bar for a drawing streamed row by row.
function watchRows(section, showPartial) {
  const box = section.querySelector(".progress");
  const bar = box.querySelector("progress");
  const text = box.querySelector("output");
  const cancel = box.querySelector("button");
  bar.removeAttribute("value"); // indeterminate until the first progress event
  text.value = "waiting for its turn…";
  box.hidden = false;
  cancel.hidden = false;
  let last = null;
  return {
    onEvent(name, data) {
      if (name === "partial") showPartial(data.images);
      if (name !== "progress") return;
      last = data;
      bar.max = data.rows;
      bar.value = data.rows_done;
      const left = data.eta_s === null ? "" : ` · about ${formatSeconds(data.eta_s)} left`;
      text.value = `${data.rows_done} of ${data.rows} rows · ${formatSeconds(data.elapsed_s)}${left}`;
    },
    end(result) {
      cancel.hidden = true;
      const at = last ? ` at ${last.rows_done} of ${last.rows} rows` : "";
      if (result.cancelled) text.value = `cancelled${at}`;
      else if (result.ok) text.value = `${last?.rows ?? "all"} rows in ${formatSeconds(result.ms / 1000)}`;
      else text.value = `stopped${at}`;
    },
  };
}

function say(statusEl, text, isError = false) {
  statusEl.textContent = text;
  statusEl.classList.toggle("error", isError);
  statusEl.setAttribute("role", isError ? "alert" : "status");
}

function logCall(method, path, status, ms, ok) {
  const item = document.createElement("li");
  item.textContent = `${method} /${path} · ${status || "no answer"} · ${formatMs(ms)}`;
  item.classList.toggle("error", !ok);
  const list = $("calls");
  list.prepend(item);
  while (list.children.length > MAX_LOGGED_CALLS) list.lastChild.remove();
}

const formatMs = (ms) => `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
const formatSeconds = (s) => `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;

function formatNumber(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value !== "number") return String(value);
  return Number.isInteger(value) ? String(value) : value.toPrecision(4);
}

// ---------------------------------------------------------------- reading the form

const readNumber = (input) => (input.value.trim() === "" ? undefined : Number(input.value));

// Digits become an exact BigInt; anything else goes as typed, so the API says what is wrong.
function readSeed(input) {
  const text = input.value.trim();
  if (text === "") return undefined;
  return /^\d+$/.test(text) ? BigInt(text) : text;
}

const checked = (name) => document.querySelector(`input[name="${name}"]:checked`).value;
const can = (operation) => state.model.operations.includes(operation);
const isConditional = (model) => model.conditional === true || model.family === "cvae";
const streams = (model) => AUTOREGRESSIVE.has(model.family); // draws row by row: server-sent events

// ---------------------------------------------------------------- images

const pngSource = (b64) => `data:image/png;base64,${b64}`;

// Each image shown at [width, height] CSS pixels, whatever its own size (a partial canvas is
// not scaled, the finished image is).
function showImages(container, images, altFor, [width, height] = [84, 84]) {
  const flat = images.flat(Infinity);
  container.replaceChildren(
    ...flat.map((b64, i) => {
      const img = new Image(width, height);
      img.src = pngSource(b64);
      img.alt = altFor(i, flat.length);
      return img;
    }),
  );
  return container.children;
}

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

// The PNG colour type of a file's bytes (0 gray, 2 RGB, 3 palette, 4 gray + alpha, 6 RGBA).
async function pngColourType(file) {
  const head = new Uint8Array(await file.slice(0, 26).arrayBuffer());
  const signature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  return signature.every((b, i) => head[i] === b) ? head[25] : undefined;
}

// Gray by luma (ITU-R 601-2, as Pillow's "L" and the API make it), in place; whether any pixel
// had colour.
function makeGray(pixels) {
  let coloured = false;
  for (let i = 0; i < pixels.length; i += 4) {
    const [r, g, b] = [pixels[i], pixels[i + 1], pixels[i + 2]];
    if (r !== g || g !== b) coloured = true;
    const luma = (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
    pixels[i] = pixels[i + 1] = pixels[i + 2] = luma;
  }
  return coloured;
}

// A file the API can take, in the model's shape (its card's C, H, W): a PNG of the model's size
// and channels (grayscale for C = 1, RGB for C = 3) is sent as it is; any other image the
// browser can read is scaled to fit (on black, as the models were trained), made grayscale for
// a grayscale model, and sent as a PNG.
async function prepareImage(file) {
  const [channels, height, width] = state.model.image_shape ?? [1, 28, 28];
  if (file.size > MAX_UPLOAD_BYTES) {
    throw new Error(`${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MiB; the limit is 8 MiB.`);
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    throw new Error(
      `${file.name} is not an image this browser can read. Use a PNG, JPEG, GIF, WebP or BMP file.`,
    );
  }
  const sameSize = bitmap.width === width && bitmap.height === height;
  const fits = channels === 3 ? [2] : [0];
  if (file.type === "image/png" && sameSize && fits.includes(await pngColourType(file))) {
    const b64 = (await readAsDataUrl(file)).split(",")[1];
    return { b64, name: file.name, note: `${file.name}, ${width}×${height}` };
  }
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  context.fillStyle = "black";
  context.fillRect(0, 0, width, height);
  const scale = Math.min(width / bitmap.width, height / bitmap.height);
  const w = bitmap.width * scale;
  const h = bitmap.height * scale;
  context.drawImage(bitmap, (width - w) / 2, (height - h) / 2, w, h);
  let madeGray = false;
  if (channels === 1) {
    const pixels = context.getImageData(0, 0, width, height);
    madeGray = makeGray(pixels.data);
    context.putImageData(pixels, 0, 0);
  }
  const b64 = canvas.toDataURL("image/png").split(",")[1];
  const size = sameSize
    ? `${width}×${height}`
    : `scaled from ${bitmap.width}×${bitmap.height} to ${width}×${height}`;
  const done = madeGray ? ", made grayscale" : sameSize ? ", converted to PNG" : "";
  return { b64, name: file.name, note: `${file.name}, ${size}${done}` };
}

// What the upload does to an image for ``model``: shown under the upload field.
function uploadHint(model) {
  const [channels, height, width] = model.image_shape ?? [1, 28, 28];
  const kind = channels === 3 ? "in colour (RGB)" : "grayscale";
  return `It is scaled to ${width}×${height}, the model's image size, and sent ${kind}.`;
}

// ---------------------------------------------------------------- models

async function loadHealth() {
  const result = await call("GET", "health/ready");
  const models = Object.values(result.data.models ?? {});
  const providers = [...new Set(models.map((m) => m.provider).filter(Boolean))];
  const where = providers.length ? ` on ${providers.join(", ")}` : "";
  if (result.ok) say($("health"), `ready${where} (${formatMs(result.ms)})`);
  else say($("health"), `${result.data.error} (${result.data.code})`, true);
}

async function loadModels() {
  const data = await run($("model-section"), $("model-status"), "GET", "models");
  if (!data) return;
  state.models = data.models;
  const select = $("model");
  select.replaceChildren(
    ...state.models.map((m) => {
      const ready = m.state === "ready";
      const label = ready ? `${m.name} (${m.family})` : `${m.name} (${m.state})`;
      return new Option(label, m.name, false, false);
    }),
  );
  [...select.options].forEach((o, i) => (o.disabled = state.models[i].state !== "ready"));
  const ready = state.models.filter((m) => m.state === "ready");
  if (!ready.length) {
    say($("model-status"), "No model is ready to serve; see the service status above.", true);
    return;
  }
  const asked = new URLSearchParams(location.search).get("model");
  const quick = ready.find((m) => m.operations.includes("sample") && !AUTOREGRESSIVE.has(m.family));
  const first = ready.find((m) => m.name === asked) ?? quick ?? ready[0];
  select.disabled = false;
  select.value = first.name;
  selectModel(first.name);
}

function showCard(model) {
  const rows = [
    ["family", model.family],
    ["version", model.version],
    ["dataset", model.dataset],
    ["state", model.state],
    ["operations", model.operations.join(", ") || "none"],
    ["image shape", model.image_shape?.join(" × ")],
    ["latent size", model.latent_dim],
    ["provider", model.provider],
    ...Object.entries(model.providers).map(([graph, p]) => [`${graph} graph`, p]),
  ];
  const list = document.createElement("dl");
  for (const [term, value] of rows) {
    list.append(Object.assign(document.createElement("dt"), { textContent: term }));
    list.append(Object.assign(document.createElement("dd"), { textContent: formatNumber(value) }));
  }
  const metrics = Object.entries(model.metrics);
  const table = document.createElement("table");
  table.createCaption().textContent = "Metrics (test split, from the model card)";
  for (const [name, value] of metrics) {
    const row = table.insertRow();
    row.insertCell().textContent = name;
    row.insertCell().textContent = formatNumber(value);
  }
  $("card").replaceChildren(list, ...(metrics.length ? [table] : []));
}

function selectModel(name) {
  const model = state.models.find((m) => m.name === name);
  state.model = model;
  const url = new URL(location.href);
  url.searchParams.set("model", name);
  history.replaceState(null, "", url);
  showCard(model);

  $("sample-section").hidden = !can("sample");
  for (const el of document.querySelectorAll("[data-knob]")) {
    el.hidden = !KNOB_FAMILIES[el.dataset.knob].has(model.family);
  }
  $("label-field").hidden = !isConditional(model);
  if (isConditional(model)) {
    const names = model.class_names ?? [...Array(10).keys()].map(String);
    $("label").replaceChildren(new Option("any", ""), ...names.map((c) => new Option(c, c)));
  }
  $("n").value = AUTOREGRESSIVE.has(model.family) ? 1 : 16;

  $("interpolate-section").hidden = !can("interpolate");
  for (const end of ["start", "end"]) {
    const [seedRadio, imageRadio] = document.querySelectorAll(`input[name="${end}-kind"]`);
    seedRadio.disabled = !can("sample");
    imageRadio.disabled = !can("encode");
    (can("sample") ? seedRadio : imageRadio).checked = true;
  }

  const uploadOps = ["encode", "reconstruct", "score", "complete"];
  $("upload-section").hidden = !uploadOps.some(can);
  $("upload-hint").textContent = uploadHint(model);
  for (const el of document.querySelectorAll("#upload-section [data-op]")) {
    el.hidden = !can(el.dataset.op);
  }
  $("traverse-section").hidden = !can("traverse");
  $("dim").max = Math.max(0, (model.latent_dim ?? 1) - 1);

  for (const [id, controller] of Object.entries(controllers)) {
    tickets[id] += 1; // the call's answer is dropped, its work stopped
    controller.abort();
    delete controllers[id];
  }
  for (const box of document.querySelectorAll(".progress")) box.hidden = true;
  for (const id of ["grid", "strip", "completions", "traversal"]) $(id).replaceChildren();
  for (const id of ["sample-status", "interpolate-status", "traverse-status"]) say($(id), "");
  $("player").hidden = true;
  $("reconstruction-figure").hidden = true;
  $("numbers").hidden = true;
  $("seed-used").value = "none yet";
  $("curl").textContent = "";
  $("copy-curl").disabled = true;
  if (state.upload) useUpload(state.upload.file);
  if (can("sample") && !AUTOREGRESSIVE.has(model.family)) sample();
  else if (can("sample")) say($("sample-status"), "This model draws pixel by pixel: expect seconds per image.");
}

// ---------------------------------------------------------------- sample

async function sample() {
  const model = state.model;
  const body = { model: model.name, n: readNumber($("n")), scale: readNumber($("scale")) ?? 1 };
  const seed = readSeed($("seed"));
  if (seed !== undefined) body.seed = seed;
  for (const knob of Object.keys(KNOB_FAMILIES)) {
    if (KNOB_FAMILIES[knob].has(model.family) && $(knob).value.trim() !== "") {
      body[knob] = readNumber($(knob));
    }
  }
  if (isConditional(model) && $("label").value !== "") body.label = $("label").value;
  const columns = readNumber($("columns"));
  const label = body.label === undefined ? "" : `, class ${body.label}`;
  const grid = $("grid");
  const [, height, width] = model.image_shape ?? [1, 28, 28];
  const size = [width * body.scale, height * body.scale];
  // Row-by-row models stream, and the page lays their images out in the columns asked for; the
  // others answer at once, with one PNG grid of those columns if asked for.
  const streamed = streams(model);
  const asGrid = !streamed && columns !== undefined;
  if (asGrid) body.columns = columns;
  const laidOut = streamed && columns > 0;
  grid.classList.toggle("columns", laidOut);
  grid.style.gridTemplateColumns = laidOut ? `repeat(${columns}, max-content)` : "";
  const showPartial = (images) =>
    showImages(grid, images, (i, n) => `${model.name} sample${label} being drawn, image ${i + 1} of ${n}`, size);
  const accept = streamed ? EVENT_STREAM : asGrid ? "image/png" : undefined;
  const data = await run($("sample-section"), $("sample-status"), "POST", "sample", body, {
    accept,
    showPartial: streamed ? showPartial : undefined,
  });
  if (!data) return;
  const drawn = asGrid ? data.headers.get("X-Seed") : data.seed;
  const used = seed ?? BigInt(drawn); // the page's own seed stays exact past 2**53
  $("seed").value = String(used);
  $("seed-used").value = String(used);
  $("curl").textContent = curlFor("sample", { ...body, seed: used }, accept);
  $("copy-curl").disabled = false;
  $("copy-status").textContent = "";
  if (asGrid) {
    const img = new Image();
    img.src = pngSource(data.png);
    img.alt = `${model.name} sample${label}, seed ${used}, ${body.n} images in ${columns} columns`;
    grid.replaceChildren(img);
    return;
  }
  const altFor = (i, n) => `${data.model} sample${label}, seed ${used}, image ${i + 1} of ${n}`;
  showImages(grid, data.images, altFor, size);
}

async function copyCurl() {
  const command = $("curl").textContent;
  try {
    await navigator.clipboard.writeText(command);
    $("copy-status").textContent = "Copied.";
  } catch {
    getSelection().selectAllChildren($("curl"));
    $("copy-status").textContent = "Selected: press Ctrl+C to copy.";
  }
}

// ---------------------------------------------------------------- interpolate

async function endpoint(end) {
  if (checked(`${end}-kind`) === "seed") {
    const seed = readSeed($(`${end}-seed`));
    return { body: { seed }, text: `seed ${seed ?? "?"}` };
  }
  const file = state.ends[end];
  if (!file) throw new Error(`Choose the ${end} image first.`);
  const image = await prepareImage(file);
  return { body: { image: image.b64 }, text: image.name };
}

async function interpolate() {
  const status = $("interpolate-status");
  let start;
  let end;
  try {
    start = await endpoint("start");
    end = await endpoint("end");
  } catch (err) {
    say(status, err.message, true);
    return;
  }
  const method = checked("method");
  const body = {
    model: state.model.name,
    start: start.body,
    end: end.body,
    steps: readNumber($("steps")),
    method,
  };
  const data = await run($("interpolate-section"), status, "POST", "interpolate", body);
  if (!data) return;
  const altFor = (i, n) =>
    `${data.model}, ${method} from ${start.text} to ${end.text}, step ${i + 1} of ${n}`;
  const frames = showImages($("strip"), data.images, altFor);
  [...frames].forEach((img, i) => {
    img.tabIndex = 0;
    img.addEventListener("click", () => showFrame(i));
    img.addEventListener("keydown", (e) => (e.key === "Enter" || e.key === " ") && showFrame(i));
  });
  const slider = $("frame-slider");
  slider.max = frames.length - 1;
  $("player").hidden = false;
  showFrame(0);
}

function showFrame(i) {
  const frames = $("strip").children;
  const slider = $("frame-slider");
  slider.value = i;
  $("frame").src = frames[i].src;
  $("frame").alt = frames[i].alt;
  const text = `step ${i + 1} of ${frames.length}`;
  $("frame-label").value = text;
  slider.setAttribute("aria-valuetext", text);
  [...frames].forEach((img, j) => img.classList.toggle("current", j === i));
}

// ---------------------------------------------------------------- your image

async function useUpload(file) {
  const status = $("upload-status");
  state.upload = null;
  for (const id of ["encode", "reconstruct", "score", "complete"]) $(id).disabled = true;
  $("original-figure").hidden = true;
  $("reconstruction-figure").hidden = true;
  $("numbers").hidden = true;
  $("completions").replaceChildren();
  let image;
  try {
    image = await prepareImage(file);
  } catch (err) {
    say(status, err.message, true);
    return;
  }
  state.upload = { ...image, file };
  $("original").src = pngSource(image.b64);
  $("original").alt = `your image: ${image.name}`;
  $("original-caption").textContent = image.note;
  $("original-figure").hidden = false;
  for (const id of ["encode", "reconstruct", "score", "complete"]) $(id).disabled = false;
  say(status, `Ready: ${image.note}.`);
}

function showNumbers(data) {
  const lines = Object.entries(data)
    .filter(([key]) => !["model", "version", "images"].includes(key))
    .map(([key, value]) => {
      const rows = Array.isArray(value) && Array.isArray(value[0]) ? value : [value];
      const text = rows.map((r) => [r].flat().map(formatNumber).join(" ")).join("\n  ");
      const size = rows[0].length > 1 ? ` (${rows[0].length})` : "";
      return `${key}${size}: ${text}`;
    });
  $("numbers").textContent = `${data.model}\n${lines.join("\n")}`;
  $("numbers").hidden = false;
}

// A conditional model's class, as picked, for the calls that take one; "any" sends none.
const pickedLabel = () => (isConditional(state.model) && $("label").value !== "" ? { label: $("label").value } : {});

async function imageCall(path, extra = {}, options = {}) {
  const body = { model: state.model.name, images: [state.upload.b64], ...pickedLabel(), ...extra };
  return run($("upload-section"), $("upload-status"), "POST", path, body, options);
}

async function showNumbersOf(path) {
  const data = await imageCall(path);
  if (data) showNumbers(data);
}

async function reconstruct() {
  const data = await imageCall("reconstruct");
  if (!data) return;
  $("reconstruction").src = pngSource(data.images[0]);
  $("reconstruction").alt = `${data.model} reconstruction of ${state.upload.name}`;
  $("reconstruction-caption").textContent = `${data.model}: mean squared error ${formatNumber(data.error[0])}`;
  $("reconstruction-figure").hidden = false;
}

async function complete() {
  const name = state.upload.name;
  const model = state.model.name;
  const showPartial = (images) =>
    showImages($("completions"), images, (i, n) => `${model} completion ${i + 1} of ${n} of ${name}, being drawn`);
  const options = streams(state.model) ? { showPartial } : {};
  const data = await imageCall("complete", { rows: readNumber($("rows")) }, options);
  if (!data) return;
  showImages($("completions"), data.images, (i, n) => `${data.model} completion ${i + 1} of ${n} of ${name}`);
}

// ---------------------------------------------------------------- traverse

async function traverse() {
  const dim = readNumber($("dim"));
  const seed = readSeed($("traverse-seed"));
  const body = { model: state.model.name, dim, steps: readNumber($("traverse-steps")), seed, ...pickedLabel() };
  const data = await run($("traverse-section"), $("traverse-status"), "POST", "traverse", body);
  if (!data) return;
  showImages($("traversal"), data.images, (i, n) => `${data.model}, latent dimension ${dim}, seed ${seed}, step ${i + 1} of ${n}`);
}

// ---------------------------------------------------------------- wiring

function onSubmit(id, action) {
  $(id).addEventListener("submit", (e) => {
    e.preventDefault();
    action();
  });
}

function wire() {
  $("model").addEventListener("change", (e) => selectModel(e.target.value));
  onSubmit("sample-form", sample);
  $("new-seed").addEventListener("click", () => {
    $("seed").value = "";
    sample();
  });
  $("copy-curl").addEventListener("click", copyCurl);
  for (const section of ["sample-section", "upload-section"]) {
    $(section).querySelector(".progress button").addEventListener("click", () => controllers[section]?.abort());
  }
  onSubmit("key-form", useKey);
  onSubmit("interpolate-form", interpolate);
  $("frame-slider").addEventListener("input", (e) => showFrame(Number(e.target.value)));
  for (const end of ["start", "end"]) {
    $(`${end}-file`).addEventListener("change", (e) => {
      state.ends[end] = e.target.files[0] ?? null;
      if (state.ends[end]) document.querySelector(`input[name="${end}-kind"][value="image"]`).checked = true;
    });
  }
  $("upload").addEventListener("change", (e) => e.target.files[0] && useUpload(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const file = e.dataTransfer.files[0];
    if (file) useUpload(file);
    else say($("upload-status"), "That was not a file: drop an image file.", true);
  });
  $("encode").addEventListener("click", () => showNumbersOf("encode"));
  $("reconstruct").addEventListener("click", reconstruct);
  $("score").addEventListener("click", () => showNumbersOf("score"));
  $("complete").addEventListener("click", complete);
  onSubmit("traverse-form", traverse);
}

$("api-key").value = apiKey();
wire();
loadHealth();
loadModels();
