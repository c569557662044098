// Classify playground, the explain view: why the model gave its top class, from
// POST /v1/models/{name}[/versions/{v}]:explain. A 28x28 map beside the pad for digits, each token
// highlighted for reviews. Blue votes for the class, red against, on one symmetric scale (the largest
// magnitude of the item), so white is exactly zero and the two colours compare.
// playground.js calls window.playgroundExplain with the body it classifies, on the same throttle.
"use strict";

window.playgroundExplain = (() => {
  const CELLS = 28;
  const FOR = [33, 102, 172]; // blue, the course's colour for a vote for the class
  const AGAINST = [178, 24, 43]; // red, against
  const PAPER = [255, 255, 255]; // zero
  const DARK_TEXT_FROM = 0.55; // |scaled score| from which a token's text turns white to stay legible
  const NAMED_TOKENS = 3; // tokens named in the spoken summary, each way

  const $ = (id) => document.getElementById(id);
  const ui = {
    map: $("explain-map"), tokens: $("explain-tokens"), tokensSummary: $("tokens-summary"),
    status: $("explain-status"), error: $("explain-error"),
  };

  // The colour of a score already divided by the scale: white at 0, full blue at +1, full red at -1.
  function colour(scaled) {
    const toward = scaled >= 0 ? FOR : AGAINST;
    const amount = Math.min(1, Math.abs(scaled));
    return PAPER.map((paper, i) => Math.round(paper + (toward[i] - paper) * amount));
  }

  function largestMagnitude(values) {
    let largest = 0;
    for (const value of values) largest = Math.max(largest, Math.abs(value));
    return largest;
  }

  function formatScore(value) {
    const text = Math.abs(value) >= 0.01 || value === 0 ? value.toFixed(3) : value.toExponential(1);
    return value > 0 ? `+${text}` : text;
  }

  function blankMap() {
    const context = ui.map.getContext("2d");
    context.fillStyle = "#fff";
    context.fillRect(0, 0, CELLS, CELLS);
    ui.map.setAttribute("aria-label", "Attribution map: nothing explained yet");
  }

  function clear() {
    blankMap();
    ui.tokens.replaceChildren();
    ui.tokens.hidden = true;
    ui.tokensSummary.textContent = "";
    ui.status.textContent = "";
    ui.error.textContent = "";
  }

  function showMap(target) {
    const values = target.attributions.flat();
    const scale = largestMagnitude(values) || 1;
    const context = ui.map.getContext("2d");
    const image = context.createImageData(CELLS, CELLS);
    values.forEach((value, i) => {
      const [r, g, b] = colour(value / scale);
      image.data.set([r, g, b, 255], 4 * i);
    });
    context.putImageData(image, 0, 0);
    const forCount = values.filter((v) => v > 0.1 * scale).length;
    const againstCount = values.filter((v) => v < -0.1 * scale).length;
    ui.map.setAttribute(
      "aria-label",
      `Attribution map of class ${target.label}: ${forCount} pixels clearly for it (blue), ${againstCount} `
        + `against it (red); scale plus or minus ${formatScore(scale).replace("+", "")}`,
    );
  }

  function showTokens(target) {
    const scale = largestMagnitude(target.scores) || 1;
    ui.tokens.replaceChildren(...target.tokens.flatMap((token, i) => {
      const score = target.scores[i];
      const span = document.createElement("span");
      span.className = "token";
      span.textContent = token;
      const [r, g, b] = colour(score / scale);
      span.style.backgroundColor = `rgb(${r}, ${g}, ${b})`;
      if (Math.abs(score / scale) >= DARK_TEXT_FROM) span.classList.add("strong");
      span.dataset.score = String(score);
      span.title = `${token}: ${formatScore(score)}`;
      return i === 0 ? [span] : [" ", span];
    }));
    ui.tokens.hidden = false;
    const ranked = target.tokens.map((token, i) => [token, target.scores[i]]).sort((a, b) => b[1] - a[1]);
    const named = (pairs) => pairs.map(([token]) => `“${token}”`).join(", ") || "none";
    const most = named(ranked.filter(([, s]) => s > 0).slice(0, NAMED_TOKENS));
    const least = named(ranked.filter(([, s]) => s < 0).reverse().slice(0, NAMED_TOKENS));
    ui.tokensSummary.textContent = `For ${target.label}, most: ${most}; against it, most: ${least}.`;
  }

  function showExplanation(reply) {
    const target = reply.explanations[0].targets[0];
    if (target.tokens) showTokens(target);
    else showMap(target);
    const steps = reply.method === "integrated_gradients" ? `, ${reply.steps} steps` : "";
    ui.status.textContent = `Why ${target.label} (${(target.probability * 100).toFixed(1)}%): `
      + `${reply.method.replaceAll("_", " ")}${steps}, completeness gap ${formatScore(target.completeness_gap)}.`;
    ui.error.textContent = "";
  }

  function showError(error) {
    blankMap();
    ui.tokens.replaceChildren();
    ui.tokens.hidden = true;
    ui.tokensSummary.textContent = "";
    ui.status.textContent = "";
    const status = error.status ? ` (HTTP ${error.status}${error.code ? ` ${error.code}` : ""})` : "";
    ui.error.textContent = `No explanation: ${error.message}${status}`;
  }

  // Explains what the classification body asks about: its images or texts and version, the top class.
  // It never throws: a failure becomes the view's message, and the classification stays on the page.
  async function request(modelName, classifyBody, api) {
    const body = {};
    for (const key of ["images", "texts", "version"]) {
      if (classifyBody[key] !== undefined) body[key] = classifyBody[key];
    }
    try {
      const reply = await api(`v1/models/${encodeURIComponent(modelName)}:explain`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      showExplanation(reply);
    } catch (error) {
      showError(error);
    }
  }

  clear();
  return { request, clear };
})();
