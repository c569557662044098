// Classify playground: draws a digit or takes a review and asks POST /api/v1/models/{name}:classify
// (and explain.js the :explain route, for the view of why).
// Plain browser JavaScript, no library: the page must work offline from the server's own package.
"use strict";

(() => {
  const CELLS = 28; // the model's image side; the pad is this grid scaled up
  const MNIST_BOX = 20; // MNIST fitted each digit into 20x20 (aspect kept) inside the 28x28 field
  const STROKE_CELLS = 2.4; // pen width in cells: about MNIST's stroke once fitted into the box
  const INK_THRESHOLD = 24; // grey levels at or below this are background when finding the ink's box
  const UPDATE_MS = 150; // at most one request per this interval while drawing or typing
  const MAX_TOP_K = 10;

  const $ = (id) => document.getElementById(id);
  const ui = {
    model: $("model"), version: $("version"), topK: $("top-k"), token: $("token"),
    modelStatus: $("model-status"), imagePanel: $("image-panel"), textPanel: $("text-panel"),
    pad: $("pad"), pen: $("pen"), dropZone: $("drop-zone"), preview: $("preview"),
    clear: $("clear"), file: $("file"), review: $("review"),
    summary: $("summary"), classes: $("classes"), error: $("error"),
  };
  const pad = ui.pad.getContext("2d", { willReadFrequently: true });
  let models = [];

  // ---- the server ------------------------------------------------------------------------------------

  async function api(path, options = {}) {
    const headers = { ...(options.headers || {}) };
    const token = ui.token.value.trim();
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(path, { ...options, headers });
    let body = null;
    try {
      body = await response.json();
    } catch {
      // a proxy's HTML error page: the status below says enough
    }
    if (!response.ok) {
      const error = new Error(body && body.error ? body.error : `HTTP ${response.status} ${response.statusText}`);
      error.status = response.status;
      error.code = body && body.code; // the gRPC status name, e.g. FAILED_PRECONDITION
      throw error;
    }
    return body;
  }

  async function loadModels() {
    ui.modelStatus.textContent = "Loading the model list…";
    try {
      models = await api("api/v1/models");
    } catch (error) {
      ui.modelStatus.textContent = "";
      ui.error.textContent = `Could not list the models: ${error.message}`;
      return;
    }
    models.sort((a, b) => a.name.localeCompare(b.name));
    ui.model.replaceChildren(...models.map((m) => {
      const kind = m.task.startsWith("text") ? "text" : "image";
      const option = new Option(`${m.name} (${kind}${m.state === "ready" ? "" : `, ${m.state}`})`, m.name);
      option.disabled = m.versions.length === 0;
      return option;
    }));
    const firstReady = models.find((m) => m.versions.length > 0 && m.task.startsWith("image"))
      || models.find((m) => m.versions.length > 0);
    if (!firstReady) {
      ui.modelStatus.textContent = "No model is ready yet; reload the page once one has loaded.";
      return;
    }
    ui.model.value = firstReady.name;
    selectModel();
  }

  function currentModel() {
    return models.find((m) => m.name === ui.model.value);
  }

  function isTextModel(model) {
    return model.task.startsWith("text");
  }

  function selectModel() {
    const model = currentModel();
    if (!model) return;
    ui.version.replaceChildren(
      new Option(`newest (${Math.max(...model.versions)})`, ""),
      ...model.versions.map((v) => new Option(String(v), String(v))),
    );
    ui.modelStatus.textContent = `${model.name}: ${model.task}, versions ${model.versions.join(", ")}.`;
    ui.imagePanel.hidden = isTextModel(model);
    ui.textPanel.hidden = !isTextModel(model);
    showNothing();
    update.now();
  }

  // ---- requests: throttled, one in flight, the last state always sent ---------------------------------

  const update = (() => {
    let timer = null;
    let inFlight = false;
    let again = false;
    const idle = () => {
      document.body.dataset.idle = String(timer === null && !inFlight && !again);
    };
    async function run() {
      timer = null;
      if (inFlight) {
        again = true;
        idle();
        return;
      }
      inFlight = true;
      idle();
      try {
        await classify();
      } finally {
        inFlight = false;
        if (again) {
          again = false;
          schedule(0);
        }
        idle();
      }
    }
    function schedule(delay = UPDATE_MS) {
      if (timer === null) timer = setTimeout(run, delay);
      idle();
    }
    return { soon: () => schedule(), now: () => schedule(0) };
  })();

  function requestBody() {
    const model = currentModel();
    const topK = Math.min(MAX_TOP_K, Math.max(1, parseInt(ui.topK.value, 10) || 1));
    const body = { top_k: topK };
    if (ui.version.value) body.version = Number(ui.version.value);
    if (isTextModel(model)) {
      const text = ui.review.value.trim();
      if (!text) return null;
      body.texts = [text];
    } else {
      const pixels = mnistPixels();
      drawPreview(pixels);
      if (!pixels) return null;
      body.images = [Array.from({ length: CELLS }, (_, row) => Array.from(pixels.subarray(row * CELLS, (row + 1) * CELLS)))];
    }
    return body;
  }

  async function classify() {
    const model = currentModel();
    if (!model) return;
    const body = requestBody();
    if (!body) {
      showNothing();
      return;
    }
    // The explanation is asked for beside the classification, not after it: the bars need not wait.
    const explained = window.playgroundExplain.request(model.name, body, api);
    const started = performance.now();
    try {
      const reply = await api(`api/v1/models/${encodeURIComponent(model.name)}:classify`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      showClasses(reply, performance.now() - started);
    } catch (error) {
      ui.error.textContent = error.message;
    }
    await explained;
  }

  // ---- results -----------------------------------------------------------------------------------------

  function showNothing() {
    const model = currentModel();
    ui.summary.textContent = model && isTextModel(model) ? "Type or paste a review." : "Draw a digit.";
    ui.classes.replaceChildren();
    ui.error.textContent = "";
    window.playgroundExplain.clear();
  }

  function percent(score) {
    return `${(score * 100).toFixed(1)}%`;
  }

  function showClasses(reply, milliseconds) {
    const classes = reply.predictions[0].classes;
    const best = classes[0];
    const label = document.createElement("strong");
    label.id = "top-label";
    label.textContent = best.label;
    const latency = document.createElement("span");
    latency.id = "latency";
    latency.textContent = `${milliseconds.toFixed(1)} ms`;
    ui.summary.replaceChildren(
      "Predicted ", label, ` (${percent(best.score)}) by ${reply.model} version ${reply.version}, in `,
      latency, " round trip.",
    );
    ui.classes.replaceChildren(...classes.map((c) => {
      const item = document.createElement("li");
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = c.label;
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.setAttribute("aria-hidden", "true");
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.width = `${Math.max(0, Math.min(100, c.score * 100))}%`;
      bar.append(fill);
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = percent(c.score);
      item.append(name, bar, score);
      return item;
    }));
    ui.error.textContent = "";
  }

  // ---- the drawing pad ------------------------------------------------------------------------------

  function clearPad() {
    pad.fillStyle = "#000";
    pad.fillRect(0, 0, ui.pad.width, ui.pad.height);
  }

  function setPen() {
    pad.strokeStyle = "#fff";
    pad.fillStyle = "#fff";
    pad.lineWidth = (ui.pad.width / CELLS) * STROKE_CELLS;
    pad.lineCap = "round";
    pad.lineJoin = "round";
  }

  function dot(x, y) {
    setPen();
    pad.beginPath();
    pad.arc(x, y, pad.lineWidth / 2, 0, 2 * Math.PI);
    pad.fill();
  }

  function line(from, to) {
    setPen();
    pad.beginPath();
    pad.moveTo(from.x, from.y);
    pad.lineTo(to.x, to.y);
    pad.stroke();
  }

  function padPoint(event) {
    const box = ui.pad.getBoundingClientRect();
    return {
      x: ((event.clientX - box.left) * ui.pad.width) / box.width,
      y: ((event.clientY - box.top) * ui.pad.height) / box.height,
    };
  }

  let last = null; // the pointer's previous point while a stroke is drawn
  ui.pad.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    ui.pad.setPointerCapture(event.pointerId);
    last = padPoint(event);
    dot(last.x, last.y);
    update.soon();
  });
  ui.pad.addEventListener("pointermove", (event) => {
    if (!last) return;
    const point = padPoint(event);
    line(last, point);
    last = point;
    update.soon();
  });
  const endStroke = () => {
    if (!last) return;
    last = null;
    update.now();
  };
  ui.pad.addEventListener("pointerup", endStroke);
  ui.pad.addEventListener("pointercancel", endStroke);

  // Keyboard drawing: a pen on the 28x28 grid that arrow keys move; Space lowers or lifts it.
  const keyPen = { x: CELLS / 2, y: CELLS / 2, down: false };
  function showKeyPen() {
    ui.pen.hidden = false;
    ui.pen.style.left = `${(keyPen.x / CELLS) * 100}%`;
    ui.pen.style.top = `${(keyPen.y / CELLS) * 100}%`;
    ui.pen.classList.toggle("down", keyPen.down);
  }
  const cell = () => ui.pad.width / CELLS;
  ui.pad.addEventListener("focus", showKeyPen);
  ui.pad.addEventListener("blur", () => { ui.pen.hidden = true; });
  ui.pad.addEventListener("keydown", (event) => {
    const step = event.shiftKey ? 3 : 1;
    const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    if (event.key in moves) {
      const [dx, dy] = moves[event.key];
      const from = { x: keyPen.x * cell(), y: keyPen.y * cell() };
      keyPen.x = Math.min(CELLS - 1, Math.max(1, keyPen.x + dx));
      keyPen.y = Math.min(CELLS - 1, Math.max(1, keyPen.y + dy));
      if (keyPen.down) {
        line(from, { x: keyPen.x * cell(), y: keyPen.y * cell() });
        update.soon();
      }
    } else if (event.key === " " || event.key === "Enter") {
      keyPen.down = !keyPen.down;
      if (keyPen.down) {
        dot(keyPen.x * cell(), keyPen.y * cell());
        update.soon();
      }
    } else if (event.key === "Delete" || event.key === "Backspace") {
      clearPad();
      update.now();
    } else {
      return;
    }
    event.preventDefault();
    showKeyPen();
  });

  ui.clear.addEventListener("click", () => {
    clearPad();
    ui.file.value = "";
    update.now();
  });

  // ---- image files: drawn onto the pad, so they go through the same MNIST normalisation ----------------

  async function openImage(file) {
    let bitmap;
    try {
      bitmap = await createImageBitmap(file);
    } catch {
      ui.error.textContent = `${file.name} is not an image this browser can decode (try PNG or JPEG).`;
      return;
    }
    // Fitted into the pad, aspect kept, on white (transparent pixels are paper, not ink) ...
    const side = ui.pad.width;
    const scale = Math.min(side / bitmap.width, side / bitmap.height);
    const width = Math.max(1, Math.round(bitmap.width * scale));
    const height = Math.max(1, Math.round(bitmap.height * scale));
    const scratch = document.createElement("canvas");
    scratch.width = width;
    scratch.height = height;
    const context = scratch.getContext("2d", { willReadFrequently: true });
    context.fillStyle = "#fff";
    context.fillRect(0, 0, width, height);
    context.drawImage(bitmap, 0, 0, width, height);
    bitmap.close();
    // ... then made light-on-dark before it meets the pad's black, so the letterbox is background too.
    const image = context.getImageData(0, 0, width, height);
    greyLightOnDark(image);
    clearPad();
    pad.putImageData(image, Math.floor((side - width) / 2), Math.floor((side - height) / 2));
    update.now();
  }

  // Grey by luminance. A dark digit on light paper (light border: a scan or a photo) is inverted, since
  // the models learnt MNIST's light strokes on black; then the border's mean level becomes black and the
  // rest is stretched to 0-255, so grey paper or a dim photo does not count as ink.
  function greyLightOnDark(image) {
    const { width, height, data } = image;
    const grey = new Float32Array(width * height);
    let border = 0;
    let borderCount = 0;
    for (let i = 0; i < grey.length; i += 1) {
      grey[i] = 0.299 * data[4 * i] + 0.587 * data[4 * i + 1] + 0.114 * data[4 * i + 2];
      const x = i % width;
      const y = Math.floor(i / width);
      if (x === 0 || y === 0 || x === width - 1 || y === height - 1) {
        border += grey[i];
        borderCount += 1;
      }
    }
    const invert = border / borderCount > 127;
    const background = invert ? 255 - border / borderCount : border / borderCount;
    const gain = 255 / Math.max(1, 255 - background);
    for (let i = 0; i < grey.length; i += 1) {
      const light = invert ? 255 - grey[i] : grey[i];
      const value = Math.min(255, Math.max(0, (light - background) * gain));
      data[4 * i] = data[4 * i + 1] = data[4 * i + 2] = value;
      data[4 * i + 3] = 255;
    }
  }

  ui.file.addEventListener("change", () => {
    if (ui.file.files.length) openImage(ui.file.files[0]);
  });
  ui.dropZone.addEventListener("dragover", (event) => {
    event.preventDefault();
    ui.dropZone.classList.add("dragging");
  });
  ui.dropZone.addEventListener("dragleave", () => ui.dropZone.classList.remove("dragging"));
  ui.dropZone.addEventListener("drop", (event) => {
    event.preventDefault();
    ui.dropZone.classList.remove("dragging");
    const file = event.dataTransfer.files[0];
    if (file) openImage(file);
  });

  // ---- MNIST's normalisation ------------------------------------------------------------------------
  // MNIST digits were fitted into a 20x20 box (aspect kept, anti-aliased) and placed in the 28x28 field
  // with their centre of mass at its centre. The pad's ink gets the same: its bounding box is
  // area-averaged down to fit 20x20, rescaled so the brightest pixel is 255, then shifted so the centre
  // of mass lands on (14, 14). An empty pad gives null.
  function mnistPixels() {
    const side = ui.pad.width;
    const rgba = pad.getImageData(0, 0, side, side).data;
    let left = side;
    let top = side;
    let right = -1;
    let bottom = -1;
    for (let y = 0; y < side; y += 1) {
      for (let x = 0; x < side; x += 1) {
        if (rgba[4 * (y * side + x)] > INK_THRESHOLD) {
          left = Math.min(left, x);
          right = Math.max(right, x);
          top = Math.min(top, y);
          bottom = Math.max(bottom, y);
        }
      }
    }
    if (right < 0) return null;
    const inkWidth = right - left + 1;
    const inkHeight = bottom - top + 1;
    const scale = MNIST_BOX / Math.max(inkWidth, inkHeight);
    const boxWidth = Math.max(1, Math.round(inkWidth * scale));
    const boxHeight = Math.max(1, Math.round(inkHeight * scale));
    const box = new Float32Array(boxWidth * boxHeight);
    for (let by = 0; by < boxHeight; by += 1) {
      const y0 = top + Math.floor((by * inkHeight) / boxHeight);
      const y1 = Math.max(y0 + 1, top + Math.floor(((by + 1) * inkHeight) / boxHeight));
      for (let bx = 0; bx < boxWidth; bx += 1) {
        const x0 = left + Math.floor((bx * inkWidth) / boxWidth);
        const x1 = Math.max(x0 + 1, left + Math.floor(((bx + 1) * inkWidth) / boxWidth));
        let sum = 0;
        for (let y = y0; y < y1; y += 1) {
          for (let x = x0; x < x1; x += 1) sum += rgba[4 * (y * side + x)];
        }
        box[by * boxWidth + bx] = sum / ((y1 - y0) * (x1 - x0));
      }
    }
    const brightest = Math.max(...box);
    let mass = 0;
    let massX = 0;
    let massY = 0;
    for (let i = 0; i < box.length; i += 1) {
      box[i] = (box[i] * 255) / brightest;
      mass += box[i];
      massX += box[i] * ((i % boxWidth) + 0.5);
      massY += box[i] * (Math.floor(i / boxWidth) + 0.5);
    }
    const shiftX = Math.round(CELLS / 2 - massX / mass);
    const shiftY = Math.round(CELLS / 2 - massY / mass);
    const pixels = new Uint8Array(CELLS * CELLS);
    for (let i = 0; i < box.length; i += 1) {
      const x = (i % boxWidth) + shiftX;
      const y = Math.floor(i / boxWidth) + shiftY;
      if (x >= 0 && x < CELLS && y >= 0 && y < CELLS) pixels[y * CELLS + x] = Math.round(box[i]);
    }
    return pixels;
  }

  function drawPreview(pixels) {
    const context = ui.preview.getContext("2d");
    const image = context.createImageData(CELLS, CELLS);
    for (let i = 0; i < CELLS * CELLS; i += 1) {
      const value = pixels ? pixels[i] : 0;
      image.data[4 * i] = image.data[4 * i + 1] = image.data[4 * i + 2] = value;
      image.data[4 * i + 3] = 255;
    }
    context.putImageData(image, 0, 0);
  }

  // ---- wiring -----------------------------------------------------------------------------------------

  ui.model.addEventListener("change", selectModel);
  ui.version.addEventListener("change", () => update.now());
  ui.topK.addEventListener("input", () => update.soon());
  ui.review.addEventListener("input", () => update.soon());
  ui.token.addEventListener("change", () => loadModels());

  clearPad();
  drawPreview(null);
  loadModels();
})();
