// AniRec web chat: drop / paste / pick a picture → POST /api/identify → an answer bubble.
// No framework; all text from the server goes through textContent (never innerHTML).
"use strict";

(function () {
  const USER_HEADER = "X-AniRec-User";
  const log = document.getElementById("log");
  const fileInput = document.getElementById("file");
  const drop = document.getElementById("drop");
  const banner = document.getElementById("banner");
  let maxBytes = 20e6;

  // -- the browser-local user id (random, kept in localStorage) ------------------------------
  function randomId() {
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return btoa(String.fromCharCode.apply(null, b))
      .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  const userId = (function () {
    try {
      let id = localStorage.getItem("anirec-user");
      if (!id || !/^[A-Za-z0-9_-]{16,64}$/.test(id)) {
        id = randomId();
        localStorage.setItem("anirec-user", id);
      }
      return id;
    } catch (e) {
      return randomId(); // storage disabled: a per-page id
    }
  })();

  // -- tiny DOM helper ---------------------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "dataset") Object.assign(el.dataset, v);
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function scrollDown() {
    requestAnimationFrame(() => window.scrollTo({ top: document.body.scrollHeight, behavior: "smooth" }));
  }

  function addMessage(who, bubble) {
    const row = h("div", { class: "msg " + who },
      who === "bot" ? h("div", { class: "avatar", "aria-hidden": "true" }, "A") : null,
      bubble);
    log.append(row);
    scrollDown();
    return row;
  }

  function mb(n) {
    if (n < 100e3) return Math.max(1, Math.round(n / 1e3)) + " KB";
    return (n / 1e6).toFixed(n >= 10e6 ? 0 : 1) + " MB";
  }

  // -- preview clips on or off (remembered by the browser) ------------------------------------------
  const previewBox = document.getElementById("preview");
  if (previewBox) {
    try { previewBox.checked = localStorage.getItem("anirec-preview") !== "off"; } catch (e) { /* storage off */ }
    previewBox.addEventListener("change", () => {
      try { localStorage.setItem("anirec-preview", previewBox.checked ? "on" : "off"); } catch (e) { /* storage off */ }
    });
  }

  // -- the answer language: the page's choice, else the browser's ---------------------------------
  const LANGS = ["en", "ja", "zh"];
  const langSelect = document.getElementById("lang");
  // Every text of the page, in each language (bot/chat/i18n.py's "web.*" entries).
  let TEXTS = {};
  try { TEXTS = JSON.parse(document.getElementById("texts").textContent || "{}"); } catch (e) { /* none */ }
  function T(key, vals) {
    const table = TEXTS[currentLang()] || TEXTS.en || {};
    let s = table[key] || (TEXTS.en || {})[key] || key;
    for (const [k, v] of Object.entries(vals || {})) s = s.split("{" + k + "}").join(String(v));
    return s;
  }
  function applyTexts() {
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = T(el.dataset.i18n);
    for (const el of document.querySelectorAll("[data-i18n-title]")) el.title = T(el.dataset.i18nTitle);
    for (const el of document.querySelectorAll("[data-i18n-aria-label]")) {
      el.setAttribute("aria-label", T(el.dataset.i18nAriaLabel));
    }
  }
  function browserLang() {
    for (const l of navigator.languages || [navigator.language || "en"]) {
      const base = String(l).toLowerCase().split("-")[0];
      if (LANGS.includes(base)) return base;
    }
    return "en";
  }
  function currentLang() {
    return (langSelect && LANGS.includes(langSelect.value)) ? langSelect.value : browserLang();
  }
  if (langSelect) {
    let saved = null;
    try { saved = localStorage.getItem("anirec-lang"); } catch (e) { /* storage off */ }
    langSelect.value = LANGS.includes(saved) ? saved : browserLang();
    langSelect.addEventListener("change", () => {
      try { localStorage.setItem("anirec-lang", langSelect.value); } catch (e) { /* storage off */ }
      document.documentElement.lang = langSelect.value;
      applyTexts();
    });
    document.documentElement.lang = langSelect.value;
  }
  applyTexts();
  function langQuery() { return "?lang=" + encodeURIComponent(currentLang()); }

  // -- user's bubble: the picture they sent --------------------------------------------------------
  function isImageFile(blob, name) {
    return (blob.type || "").startsWith("image/") || /\.(png|jpe?g|gif|webp|bmp|avif)$/i.test(name || "");
  }

  function userBubble(blob, name, src) {
    const url = src || URL.createObjectURL(blob);
    const isVideo = !src && (blob.type || "").startsWith("video/");
    const isImage = !!src || isImageFile(blob, name);
    let media;
    if (!isVideo && !isImage) {
      media = h("div", { class: "sent file-icon", "aria-label": T("web.a_file") }, "📄");
    } else if (isVideo) {
      media = h("video", { class: "sent", src: url, muted: true, autoplay: true, loop: true, playsinline: true });
      media.muted = true;
    } else {
      media = h("img", { class: "sent", src: url, alt: name || T("web.your_picture") });
    }
    return h("div", { class: "bubble user-bubble" }, media,
      h("div", { class: "caption" }, name || T("web.pasted"), blob ? " · " + mb(blob.size) : ""));
  }

  function typingBubble() {
    return h("div", { class: "bubble typing", "aria-label": T("web.looking") },
      h("span", { class: "dot" }), h("span", { class: "dot" }), h("span", { class: "dot" }),
      h("span", { class: "typing-text" }, T("web.looking")));
  }

  function errorBubble(text) {
    return h("div", { class: "bubble error" }, h("span", { class: "err-icon", "aria-hidden": "true" }, "⚠"), " ", text);
  }

  // -- the answer bubble ---------------------------------------------------------------------------
  function feedbackLabel(base, n) { return n ? base + " " + n : base; }

  function candidateList(list) {
    return h("ol", { class: "top5" }, list.map((c) =>
      h("li", {}, h("span", { class: "rank" }, String(c.rank)), h("span", { class: "cand" }, c.text),
        c.adult ? h("span", { class: "tag" }, "18+") : null)));
  }

  function sceneMedia(v) {
    if (v.preview) {
      const vid = h("video", {
        class: "preview", src: v.preview, muted: true, autoplay: true, loop: true,
        playsinline: true, preload: "auto", poster: v.still || null,
        "aria-label": T("web.preview_alt"), dataset: { slot: "scene" }
      });
      vid.muted = true;
      vid.defaultMuted = true;
      return vid;
    }
    if (v.still) return h("img", { class: "preview", src: v.still, alt: T("web.still_alt"), dataset: { slot: "scene" } });
    if (v.best && v.best.cover) {
      // no scene to show (yet): the series' cover from series.json, next to the title
      return h("img", { class: "cover", src: v.best.cover, alt: T("web.cover_alt", { title: v.best.title }),
        referrerpolicy: "no-referrer", dataset: { slot: "scene" }, onerror: (e) => { e.target.hidden = true; } });
    }
    return null;
  }

  function annotatedImg(v) {
    if (!v.annotated) return null;
    return h("img", {
      class: "annotated", src: v.annotated, loading: "lazy", dataset: { slot: "annotated" },
      alt: v.annotated_alt || T("web.faces_alt", { names: v.characters_text || "" })
    });
  }

  function stillDetails(v) {
    if (!(v.still && v.preview)) return null;
    return h("details", { class: "still", dataset: { slot: "still" } }, h("summary", {}, T("web.still")),
      h("img", { src: v.still, alt: T("web.still_alt"), loading: "lazy" }));
  }

  // The preview of an answer that went out first: asked for until it is cut (202: not yet),
  // then put in the places the bubble kept. None (204) or an error: the answer stays as it is.
  async function followPreview(bubble, v) {
    for (let tries = 0; tries < 6 && v.preview_url; tries++) {
      let r;
      try {
        r = await fetch(v.preview_url + langQuery(), { headers: { [USER_HEADER]: userId } });
      } catch (e) {
        return;
      }
      if (r.status === 202) continue;
      if (r.status !== 200) return;
      const got = await r.json().catch(() => null);
      if (!got) return;
      const full = Object.assign({}, v, got);
      // Follow the conversation only when the person is at its end (never pull them away).
      const atEnd = window.innerHeight + window.scrollY >= document.body.scrollHeight - 120;
      for (const [slot, el] of [["scene", sceneMedia(full)], ["annotated", annotatedImg(full)],
        ["still", stillDetails(full)]]) {
        const old = bubble.querySelector('[data-slot="' + slot + '"]');
        if (old && el) old.replaceWith(el);
      }
      bubble.dataset.preview = "shown";
      if (atEnd) scrollDown();
      return;
    }
  }

  function answerBubble(v) {
    const parts = [];
    const L = v.labels || {};
    const status = h("div", { class: "status status-" + v.status },
      h("span", { class: "status-dot", "aria-hidden": "true" }),
      h("span", { class: "status-text" }, v.header),
      v.confidence_text ? h("span", { class: "conf", title: v.confidence_help || "" }, v.confidence_text) : null);
    parts.push(status);

    // The scene (clip, still, else the cover): its place is kept, so a preview that follows
    // the answer (`preview_url`) takes it when it arrives.
    parts.push(sceneMedia(v) || h("span", { class: "slot", hidden: true, dataset: { slot: "scene" } }));

    if (v.best) {
      parts.push(h("div", { class: "title" }, v.best.title, v.best.adult ? h("span", { class: "tag" }, "18+") : null));
      if (v.best.other_titles && v.best.other_titles.length) {
        parts.push(h("div", { class: "alt-titles" }, v.best.other_titles.join(" / ")));
      }
      parts.push(h("div", { class: "where" }, v.best.where));
      for (const line of v.best.also || []) parts.push(h("div", { class: "also" }, "⚠ ", line));
      if (v.best.synopsis) parts.push(h("p", { class: "synopsis" }, v.best.synopsis));
      if (v.best.links && v.best.links.length) {
        parts.push(h("div", { class: "links" }, v.best.links.map((l) =>
          h("a", { class: "link-button", href: l.url, target: "_blank", rel: "noopener noreferrer" }, l.label))));
      }
    }

    if (v.characters && v.characters.length) {
      parts.push(h("div", { class: "characters" }, h("span", { class: "label" }, L.characters + ": "), v.characters_text));
    }
    parts.push(annotatedImg(v) || h("span", { class: "slot", hidden: true, dataset: { slot: "annotated" } }));

    if (v.candidates && v.candidates.length) {
      parts.push(h("div", { class: "section-label" }, L.top5));
      parts.push(candidateList(v.candidates));
    }
    if (v.closest && v.closest.length) {
      const box = h("div", { class: "closest", hidden: true },
        h("div", { class: "section-label" }, L.closest), candidateList(v.closest));
      const btn = h("button", { type: "button", class: "show-closest", "aria-expanded": "false" },
        L.show_closest);
      btn.addEventListener("click", () => {
        box.hidden = !box.hidden;
        btn.setAttribute("aria-expanded", box.hidden ? "false" : "true");
      });
      parts.push(btn, box);
    }
    if (v.no_match_hint) parts.push(h("p", { class: "muted" }, v.no_match_hint));

    if (v.genres && v.genres.length) {
      parts.push(h("div", { class: "genres" }, h("span", { class: "label" }, L.looks_like + ": "), v.genres.join(", ")));
    }

    parts.push(stillDetails(v) || h("span", { class: "slot", hidden: true, dataset: { slot: "still" } }));

    if (v.query_id && v.votes) parts.push(feedbackRow(v));
    const meta = [];
    if (v.ms !== null && v.ms !== undefined) meta.push(v.ms + " ms");
    if (meta.length) parts.push(h("div", { class: "meta" }, meta.join(" · ")));
    return h("div", { class: "bubble answer", lang: v.lang || null,
      dataset: { queryId: v.query_id || "", status: v.status } }, parts);
  }

  function feedbackRow(v) {
    const row = h("div", { class: "feedback" });
    const toast = h("div", { class: "toast", role: "status" }, v.hint || "");
    const buttons = [];
    let active = null; // {verdict, rank}

    function mk(verdict, rank, base) {
      const b = h("button", {
        type: "button", class: "fb" + (rank ? " fb-rank" : ""),
        dataset: { verdict: verdict, rank: rank ? String(rank) : "" },
        title: verdict === "correct" ? T("web.right") : verdict === "wrong" ? T("web.wrong") : T("web.it_was", { n: rank }),
        "aria-pressed": "false"
      }, base);
      b.dataset.base = base;
      b.addEventListener("click", () => vote(verdict, rank));
      buttons.push(b);
      return b;
    }

    function render(tally) {
      for (const b of buttons) {
        const verdict = b.dataset.verdict, rank = Number(b.dataset.rank || 0);
        const n = verdict === "correct" ? tally.correct : verdict === "wrong" ? tally.wrong : tally.picks[rank - 1];
        b.textContent = rank ? (n ? b.dataset.base + " ·" + n : b.dataset.base) : feedbackLabel(b.dataset.base, n);
        const on = !!active && active.verdict === verdict && (active.rank || 0) === rank;
        b.classList.toggle("on", on);
        b.setAttribute("aria-pressed", on ? "true" : "false");
      }
    }

    async function vote(verdict, rank) {
      const withdraw = !!active && active.verdict === verdict && (active.rank || 0) === (rank || 0);
      buttons.forEach((b) => { b.disabled = true; });
      try {
        const r = await fetch("/api/feedback" + langQuery(), {
          method: "POST",
          headers: { "Content-Type": "application/json", [USER_HEADER]: userId },
          body: JSON.stringify({ query_id: v.query_id, verdict: verdict, rank: rank || null, withdraw: withdraw })
        });
        const data = await r.json().catch(() => ({}));
        if (!r.ok) {
          toast.textContent = data.error || T("web.vote_failed");
          toast.classList.add("bad");
          return;
        }
        active = withdraw ? null : { verdict: verdict, rank: rank || 0 };
        render(data.tally);
        toast.classList.remove("bad");
        toast.textContent = data.message || T("web.thanks");
        row.dataset.tally = JSON.stringify(data.tally);
      } catch (e) {
        toast.textContent = T("web.offline");
        toast.classList.add("bad");
      } finally {
        buttons.forEach((b) => { b.disabled = false; });
      }
    }

    const group1 = h("div", { class: "fb-group" }, mk("correct", 0, "✅"), mk("wrong", 0, "❌"));
    row.append(group1);
    if (v.feedback_ranks > 1) {
      const group2 = h("div", { class: "fb-group" });
      for (let r = 1; r <= v.feedback_ranks; r++) group2.append(mk("pick", r, String(r)));
      row.append(group2);
    }
    render(v.tally || { correct: 0, wrong: 0, picks: [0, 0, 0, 0, 0] });
    return h("div", { class: "feedback-wrap" }, row, toast);
  }

  // -- sending -------------------------------------------------------------------------------------
  async function ask(pending, url, body) {
    let bubble;
    let answer = null;
    try {
      const query = langQuery() + (previewBox && !previewBox.checked ? "&preview=0" : "");
      const r = await fetch(url + query, { method: "POST", body: body, headers: { [USER_HEADER]: userId } });
      const data = await r.json().catch(() => ({}));
      if (r.ok) answer = data;
      bubble = r.ok ? answerBubble(data) : errorBubble(data.error || T("error.generic"));
    } catch (e) {
      bubble = errorBubble(T("web.offline"));
    }
    pending.replaceChildren(pending.querySelector(".avatar"), bubble);
    scrollDown();
    if (answer && answer.preview_url) await followPreview(bubble, answer);
  }

  async function identify(blob, name) {
    addMessage("user", userBubble(blob, name));
    if (blob.size > maxBytes) {
      addMessage("bot", errorBubble(T("web.file_too_large", { limit: mb(maxBytes) })));
      return;
    }
    const pending = addMessage("bot", typingBubble());
    const form = new FormData();
    form.append("file", blob, name || "pasted.png");
    await ask(pending, "/api/identify", form);
  }

  // Several files at once: the first is answered, a picker offers the others.
  function identifyMany(files) {
    const list = Array.from(files || []);
    if (!list.length) return;
    identify(list[0], list[0].name);
    if (list.length < 2) return;
    const rest = list.slice(1, 13);
    const choices = h("div", { class: "picker" });
    for (const f of rest) {
      const thumb = isImageFile(f, f.name) ? h("img", { src: URL.createObjectURL(f), alt: f.name })
        : h("span", { class: "file-icon", "aria-hidden": "true" }, "📄");
      const btn = h("button", { type: "button", class: "sample pick", title: f.name, dataset: { name: f.name } }, thumb);
      btn.addEventListener("click", () => { btn.remove(); identify(f, f.name); });
      choices.append(btn);
    }
    addMessage("bot", h("div", { class: "bubble picker-bubble" },
      h("p", { class: "small" }, T("web.picker", { n: list.length })), choices));
  }

  fileInput.addEventListener("change", () => {
    identifyMany(fileInput.files);
    fileInput.value = "";
  });

  // Drag and drop anywhere on the page.
  let dragDepth = 0;
  function hasFiles(e) {
    return e.dataTransfer && Array.from(e.dataTransfer.types || []).includes("Files");
  }
  window.addEventListener("dragenter", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    dragDepth++;
    drop.hidden = false;
  });
  window.addEventListener("dragover", (e) => { if (hasFiles(e)) e.preventDefault(); });
  window.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) drop.hidden = true;
  });
  window.addEventListener("drop", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    dragDepth = 0;
    drop.hidden = true;
    identifyMany(e.dataTransfer.files);
  });

  // Paste (Ctrl-V / ⌘-V) of a copied picture or file.
  document.addEventListener("paste", (e) => {
    const items = (e.clipboardData && e.clipboardData.items) || [];
    for (const it of items) {
      if (it.kind === "file") {
        const f = it.getAsFile();
        if (f) {
          e.preventDefault();
          identify(f, f.name || "pasted." + ((f.type.split("/")[1] || "png").replace("jpeg", "jpg")));
          return;
        }
      }
    }
  });

  // -- samples and status ----------------------------------------------------------------------------
  async function loadSamples() {
    try {
      const r = await fetch("/api/samples");
      if (!r.ok) return;
      const data = await r.json();
      const strip = document.getElementById("sample-strip");
      for (const s of data.samples || []) {
        const btn = h("button", { type: "button", class: "sample", title: s.name, dataset: { name: s.name } },
          h("img", { src: s.thumb, alt: T("web.sample_alt", { name: s.name }), loading: "lazy" }));
        btn.addEventListener("click", () => {
          // the server reads its own example (no upload; its own allowance, not the person's)
          addMessage("user", userBubble(null, s.name, s.thumb));
          ask(addMessage("bot", typingBubble()), "/api/samples/" + encodeURIComponent(s.id) + "/identify", null);
        });
        strip.append(btn);
      }
      if (strip.children.length) document.getElementById("samples").hidden = false;
    } catch (e) { /* no samples: nothing to show */ }
  }

  async function loadStatus() {
    try {
      const r = await fetch("/api/status" + langQuery());
      if (!r.ok) return;
      const s = await r.json();
      if (s.max_bytes) maxBytes = s.max_bytes;
      if (!s.ready) {
        banner.textContent = s.message || T("error.index");
        banner.hidden = false;
      }
    } catch (e) { /* offline: the first upload will say so */ }
  }

  document.body.dataset.user = userId;
  loadStatus();
  loadSamples();
})();
