// The wa-relay dashboard: plain JavaScript, no build step, no third-party code.
//
// The API key is kept in sessionStorage (this tab only, gone when it closes) and sent in the Authorization header of
// every call; it never goes into a URL, the DOM or the console. The page changes only on what the server-sent event
// stream (GET /v1/events) says, read with fetch(): EventSource cannot send headers. Every piece of data reaches the
// DOM through textContent or an attribute, never as HTML.
"use strict";

(() => {
  const KEY_STORE = "wa-relay.api-key";
  const FEED_MAX = 200;
  const RETRY_MAX_MS = 30000;
  const PAIRING_STATES = new Set(["qr", "pairing_code"]);
  const EXPLAINED_STATES = new Set(["reconnecting", "logged_out", "conflict"]);
  const STATE_LABELS = {
    starting: "starting",
    qr: "waiting for scan",
    pairing_code: "waiting for code",
    connecting: "connecting",
    open: "open",
    reconnecting: "reconnecting",
    logged_out: "logged out",
    conflict: "conflict",
    stopped: "stopped",
  };

  const $ = (id) => document.getElementById(id);
  const ui = {
    signin: $("signin"),
    signinForm: $("signin-form"),
    signinError: $("signin-error"),
    keyInput: $("api-key"),
    app: $("app"),
    live: $("live"),
    signOut: $("sign-out"),
    createForm: $("create-form"),
    newSession: $("new-session"),
    notice: $("notice"),
    empty: $("empty"),
    sessions: $("sessions"),
    feed: $("feed"),
    template: $("session-template"),
  };

  /** @type {{key: string|null, sessions: Map<string, object>, cards: Map<string, object>, lastEventId: string|null,
   *          stream: AbortController|null, retryMs: number}} */
  const state = {
    key: null,
    sessions: new Map(),
    cards: new Map(),
    lastEventId: null,
    stream: null,
    retryMs: 2000,
  };

  class Unauthorized extends Error {}
  class ApiFailure extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // ---- the API -------------------------------------------------------------------------------------------------

  function authHeaders(extra) {
    return Object.assign({ Authorization: `Bearer ${state.key}` }, extra || {});
  }

  async function api(method, path, body) {
    const init = { method, headers: authHeaders(), cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(path, init);
    if (resp.status === 401) {
      signOut("The API key was not accepted. Sign in again.");
      throw new Unauthorized();
    }
    if (!resp.ok) {
      let code = "http_error";
      let message = `${resp.status} ${resp.statusText}`;
      try {
        const err = (await resp.json()).error;
        code = err.code;
        message = err.message;
      } catch (_) {
        // not our JSON error shape (a proxy's page): keep the status line
      }
      throw new ApiFailure(resp.status, code, message);
    }
    return resp;
  }

  const sessionPath = (id) => `/v1/sessions/${encodeURIComponent(id)}`;

  // ---- signing in and out --------------------------------------------------------------------------------------

  function show(signedIn) {
    ui.signin.hidden = signedIn;
    ui.app.hidden = !signedIn;
    ui.signOut.hidden = !signedIn;
    ui.live.hidden = !signedIn;
  }

  async function signIn(key) {
    state.key = key;
    try {
      await api("GET", "/v1/sessions");
    } catch (e) {
      if (!(e instanceof Unauthorized)) {
        state.key = null;
        showSigninError(`The connector did not answer: ${e.message}`);
      }
      return;
    }
    sessionStorage.setItem(KEY_STORE, key);
    ui.keyInput.value = "";
    ui.signinError.hidden = true;
    show(true);
    streamForever();
  }

  function signOut(reason) {
    state.key = null;
    sessionStorage.removeItem(KEY_STORE);
    if (state.stream) state.stream.abort();
    state.stream = null;
    state.lastEventId = null;
    for (const id of [...state.cards.keys()]) removeSession(id);
    ui.feed.replaceChildren();
    ui.keyInput.value = "";
    show(false);
    if (reason) showSigninError(reason);
    ui.keyInput.focus();
  }

  function showSigninError(text) {
    ui.signinError.textContent = text;
    ui.signinError.hidden = false;
  }

  // ---- the event stream ----------------------------------------------------------------------------------------

  /** Reads a text/event-stream body and calls onEvent(type, data, id) for each event (the WHATWG rules: fields
   *  id/event/data/retry, comment lines start with ":", a blank line ends an event). */
  async function readEventStream(body, onEvent) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let type = "";
    let data = [];
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        let line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (line.endsWith("\r")) line = line.slice(0, -1);
        if (line === "") {
          if (data.length) onEvent(type || "message", data.join("\n"));
          type = "";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? "" : line.slice(colon + 1);
        if (val.startsWith(" ")) val = val.slice(1);
        if (field === "event") type = val;
        else if (field === "data") data.push(val);
        else if (field === "id" && !val.includes("\0")) state.lastEventId = val;
        else if (field === "retry" && /^\d+$/.test(val)) state.retryMs = Number(val);
      }
    }
  }

  /** One stream after another until signed out: on a drop it reconnects with Last-Event-ID (the connector replays
   *  what was missed, or says reset), backing off while the connector is away. */
  async function streamForever() {
    let failures = 0;
    let first = true;
    while (state.key) {
      const ctrl = new AbortController();
      state.stream = ctrl;
      try {
        const headers = authHeaders({ Accept: "text/event-stream" });
        if (state.lastEventId !== null) headers["Last-Event-ID"] = state.lastEventId;
        const resp = await fetch("/v1/events", {
          headers, signal: ctrl.signal, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer",
        });
        if (resp.status === 401) {
          signOut("The API key was not accepted. Sign in again.");
          return;
        }
        if (!resp.ok || !resp.body) throw new Error(`HTTP ${resp.status}`);
        setLive(true);
        // Subscribed first, then the list: an event that happens in between is in both, and applying it twice is
        // harmless (events carry states and totals, not increments). After a reconnect the list is read again
        // too, since a restarted connector cannot replay what it never saw.
        await loadSessions();
        if (!first) feed(null, "reconnected to the connector");
        first = false;
        failures = 0;
        await readEventStream(resp.body, onStreamEvent);
      } catch (e) {
        if (ctrl.signal.aborted || e instanceof Unauthorized) return;
        failures += 1;
      }
      if (!state.key || ctrl.signal.aborted) return;
      setLive(false);
      await sleep(Math.min(state.retryMs * 2 ** Math.min(failures, 4), RETRY_MAX_MS));
    }
  }

  function setLive(on) {
    ui.live.dataset.live = on ? "on" : "off";
    ui.live.textContent = on ? "live" : "reconnecting…";
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function onStreamEvent(type, raw) {
    if (type === "reset") {
      feed(null, "some events were missed; reloaded the sessions");
      loadSessions().catch(() => {});
      return;
    }
    let event;
    try {
      event = JSON.parse(raw);
    } catch (_) {
      return;
    }
    apply(event);
  }

  // ---- what an event changes -----------------------------------------------------------------------------------

  function blankView(id, stateName) {
    return { id, state: stateName || "starting", me: {}, messages: { received: 0, sent: 0 }, stale: false };
  }

  function apply(event) {
    const id = event.session_id;
    const d = event.data || {};
    const at = event.at;
    let s = state.sessions.get(id);
    switch (event.kind) {
      case "session.created":
        upsert(s || blankView(id, d.state));
        feed(id, "created", at);
        return;
      case "session.deleted":
        removeSession(id);
        feed(id, "deleted (logged out or removed)", at);
        return;
    }
    if (!s) {
      s = blankView(id);
    }
    switch (event.kind) {
      case "session.state":
      case "session.logged_out":
      case "session.conflict": {
        s.state = d.state;
        if (d.me) s.me = d.me;
        if (d.last_error) s.last_error = d.last_error;
        else if (d.state === "open") delete s.last_error;
        if (!PAIRING_STATES.has(d.state)) {
          delete s.qr;
          delete s.qr_expires_at;
        }
        const from = d.previous ? `${label(d.previous)} → ` : "";
        // The last error stays on the session until it opens again; it explains only the states it causes (a
        // stop after a logout is not caused by the restart that preceded the pairing).
        const why = d.last_error && EXPLAINED_STATES.has(d.state) ? ` (${d.last_error.message})` : "";
        feed(id, `${from}${label(d.state)}${why}`, at, d.state);
        break;
      }
      case "session.qr":
        s.qr = d.qr;
        s.qr_expires_at = d.expires_at;
        feed(id, `new QR, valid for ${d.valid_s} s`, at);
        break;
      case "session.stale":
        s.stale = Boolean(d.stale);
        feed(id, d.stale ? "stale: WhatsApp stopped delivering to it" : "no longer stale", at);
        break;
      case "message.received":
        s.messages = Object.assign({}, s.messages, { received: d.total });
        s.last_message_at = Math.floor(at / 1000);
        feed(id, `received ${plural(d.count, "message")}${from_chats(d.chats)} (${d.total} in all)`, at);
        break;
      case "message.sent":
        s.messages = Object.assign({}, s.messages, { sent: d.total });
        feed(id, `sent a message to ${d.to} (${d.total} in all)`, at);
        break;
      case "message.delivered":
        feed(id, `delivered to ${d.to || "the contact"}`, at);
        return;
      case "message.read":
        feed(id, `read by ${d.to || "the contact"}`, at);
        return;
      default:
        return;
    }
    upsert(s);
  }

  const label = (name) => STATE_LABELS[name] || String(name);
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  const from_chats = (chats) => (Array.isArray(chats) && chats.length ? ` from ${chats.map(String).join(", ")}` : "");

  async function loadSessions() {
    const list = await (await api("GET", "/v1/sessions")).json();
    const seen = new Set();
    for (const view of list) {
      const old = state.sessions.get(view.id);
      // The list has the QR but not when it expires; keep what the stream said about the same QR.
      if (old && old.qr && old.qr === view.qr) view.qr_expires_at = old.qr_expires_at;
      upsert(view);
      seen.add(view.id);
    }
    for (const id of [...state.sessions.keys()]) if (!seen.has(id)) removeSession(id);
    ui.empty.hidden = state.cards.size > 0;
  }

  // ---- rendering -----------------------------------------------------------------------------------------------

  function upsert(view) {
    state.sessions.set(view.id, view);
    let card = state.cards.get(view.id);
    if (!card) {
      card = makeCard(view.id);
      state.cards.set(view.id, card);
      const next = [...state.cards.keys()].filter((k) => k > view.id).sort()[0];
      ui.sessions.insertBefore(card.root, next ? state.cards.get(next).root : null);
    }
    render(card, view);
    ui.empty.hidden = state.cards.size > 0;
  }

  function removeSession(id) {
    const card = state.cards.get(id);
    if (card) {
      if (card.qrUrl) URL.revokeObjectURL(card.qrUrl);
      card.root.remove();
    }
    state.cards.delete(id);
    state.sessions.delete(id);
    ui.empty.hidden = state.cards.size > 0 || !state.key;
  }

  function makeCard(id) {
    const root = ui.template.content.firstElementChild.cloneNode(true);
    root.dataset.sessionId = id;
    const field = (name) => root.querySelector(`[data-field="${name}"]`);
    const part = (name) => root.querySelector(`[data-part="${name}"]`);
    const card = {
      root,
      field,
      part,
      qrShown: null,
      qrUrl: null,
      lastErrorRow: root.querySelector('[data-row="last-error"]'),
    };
    field("id").textContent = id;
    part("pairing").addEventListener("submit", (e) => {
      e.preventDefault();
      requestPairingCode(id, card);
    });
    root.querySelector('[data-action="logout"]').addEventListener("click", () => logout(id));
    root.querySelector('[data-action="delete"]').addEventListener("click", () => remove(id));
    return card;
  }

  function render(card, s) {
    const { root, field, part } = card;
    root.dataset.state = s.state;
    const badge = field("state");
    badge.textContent = label(s.state);
    badge.dataset.state = s.state;
    field("stale").hidden = !s.stale;
    const me = s.me || {};
    showJid(field("pn"), me.pn, (user) => `+${user}`, "not linked");
    showJid(field("lid"), me.lid, (user) => user, "—");
    field("owner").textContent = s.owner ? `connector ${s.owner.id}` : "this connector";
    const counts = s.messages || { received: 0, sent: 0 };
    field("received").textContent = String(counts.received);
    field("sent").textContent = String(counts.sent);
    field("last-message").textContent = s.last_message_at ? formatTime(s.last_message_at * 1000) : "none yet";
    const err = s.last_error;
    card.lastErrorRow.hidden = !err;
    field("last-error").textContent = err ? (err.code ? `${err.code}: ${err.message}` : err.message) : "";
    const guidance = field("guidance");
    guidance.hidden = !s.stale || !s.guidance;
    guidance.textContent = s.guidance || "";

    const linking = PAIRING_STATES.has(s.state);
    part("link").hidden = !linking;
    const qr = part("qr");
    if (linking && s.qr) {
      qr.hidden = false;
      qr.dataset.qr = s.qr;
      qr.dataset.expiresAt = s.qr_expires_at ? String(s.qr_expires_at) : "";
      if (card.qrShown !== s.qr) {
        card.qrShown = s.qr;
        showQrImage(s.id, card);
      }
    } else {
      qr.hidden = !linking;
      delete qr.dataset.qr;
      card.qrShown = null;
      if (!linking) field("pairing-code").hidden = true;
    }
    updateExpiry(card);
  }

  /** A jid's user part (without device), formatted, with the whole jid as the tooltip. */
  function showJid(el, jid, format, none) {
    const user = jid ? String(jid).split("@")[0].split(":")[0] : "";
    el.textContent = user ? format(user) : none;
    el.title = jid || "";
  }

  /** The QR as an image: the SVG fetched with the key and shown from a blob: URL (an <img> runs no script). */
  async function showQrImage(id, card) {
    const want = card.qrShown;
    let blob;
    try {
      blob = await (await api("GET", `${sessionPath(id)}/qr?format=svg`)).blob();
    } catch (_) {
      return; // the window closed meanwhile: the next state event hides the panel
    }
    if (card.qrShown !== want) return; // a newer QR is on its way
    if (card.qrUrl) URL.revokeObjectURL(card.qrUrl);
    card.qrUrl = URL.createObjectURL(blob);
    card.part("qr-image").src = card.qrUrl;
  }

  function updateExpiry(card) {
    const text = card.field("qr-expiry");
    const expiresAt = Number(card.part("qr").dataset.expiresAt || 0);
    if (!card.part("qr").dataset.qr) {
      text.textContent = "Waiting for a QR…";
      return;
    }
    if (!expiresAt) {
      text.textContent = "WhatsApp rotates the QR every 20 seconds while the window is open.";
      return;
    }
    const left = Math.round((expiresAt - Date.now()) / 1000);
    text.textContent =
      left > 0
        ? `This QR expires in ${left} s (${formatTime(expiresAt)}); a new one follows while the window is open.`
        : "This QR has expired; a new one follows while the window is open, else create the session again.";
  }

  function formatTime(ms) {
    const d = new Date(ms);
    const sameDay = d.toDateString() === new Date().toDateString();
    return sameDay ? d.toLocaleTimeString() : d.toLocaleString();
  }

  function feed(sessionId, text, at, stateName) {
    const li = document.createElement("li");
    const time = document.createElement("time");
    const when = at || Date.now();
    time.dateTime = new Date(when).toISOString();
    time.textContent = new Date(when).toLocaleTimeString();
    li.append(time);
    if (sessionId) {
      const who = document.createElement("strong");
      who.textContent = sessionId;
      li.append(who);
      li.dataset.sessionId = sessionId;
    }
    if (stateName) li.dataset.state = stateName;
    const what = document.createElement("span");
    what.textContent = text;
    li.append(what);
    ui.feed.prepend(li);
    while (ui.feed.children.length > FEED_MAX) ui.feed.lastElementChild.remove();
  }

  function notify(text, isError) {
    ui.notice.textContent = text;
    ui.notice.classList.toggle("error", Boolean(isError));
    ui.notice.hidden = false;
  }

  // ---- actions -------------------------------------------------------------------------------------------------

  async function createSession(id) {
    try {
      const view = await (await api("POST", "/v1/sessions", { session_id: id })).json();
      if (!state.sessions.has(view.id)) upsert(view);
      ui.newSession.value = "";
      notify(`Session ${view.id} created: scan its QR when it appears.`);
    } catch (e) {
      if (!(e instanceof Unauthorized)) notify(`Could not create ${id}: ${e.message}`, true);
    }
  }

  async function requestPairingCode(id, card) {
    const form = card.part("pairing");
    const out = card.field("pairing-code");
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const phone = form.elements.phone.value;
      const { code } = await (await api("POST", `${sessionPath(id)}/pairing-code`, { phone })).json();
      out.dataset.code = code;
      out.textContent = `Code: ${code.length === 8 ? `${code.slice(0, 4)}-${code.slice(4)}` : code}. On the phone: `
        + "Linked devices → Link a device → Link with phone number instead, then type it.";
      out.classList.remove("error");
    } catch (e) {
      if (e instanceof Unauthorized) return;
      delete out.dataset.code;
      out.textContent = `No code: ${e.message}`;
      out.classList.add("error");
    } finally {
      out.hidden = false;
      button.disabled = false;
    }
  }

  async function logout(id) {
    const ok = window.confirm(
      `Log out ${id}?\n\nThe device is unlinked from WhatsApp and its keys are deleted; linking again needs a new scan.`,
    );
    if (!ok) return;
    try {
      const { unlinked } = await (await api("POST", `${sessionPath(id)}/logout`)).json();
      notify(unlinked
        ? `${id} logged out and unlinked from WhatsApp.`
        : `${id} removed here; it was not connected, so remove it on the phone under Linked devices too.`);
    } catch (e) {
      if (!(e instanceof Unauthorized)) notify(`Could not log out ${id}: ${e.message}`, true);
    }
  }

  async function remove(id) {
    const ok = window.confirm(
      `Delete ${id}?\n\nIts keys are deleted here without unlinking: the phone keeps listing the device until you `
      + "remove it under Linked devices. Use Log out to unlink as well.",
    );
    if (!ok) return;
    try {
      await api("DELETE", sessionPath(id));
      notify(`${id} deleted.`);
    } catch (e) {
      if (!(e instanceof Unauthorized)) notify(`Could not delete ${id}: ${e.message}`, true);
    }
  }

  // ---- wiring --------------------------------------------------------------------------------------------------

  ui.signinForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const key = ui.keyInput.value.trim();
    if (key) signIn(key);
  });
  ui.signOut.addEventListener("click", () => signOut(null));
  ui.createForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const id = ui.newSession.value.trim();
    if (id) createSession(id);
  });
  // A local clock for the "expires in" countdowns; the data itself only ever comes from the stream.
  setInterval(() => {
    for (const card of state.cards.values()) if (!card.part("link").hidden) updateExpiry(card);
  }, 1000);

  const saved = sessionStorage.getItem(KEY_STORE);
  if (saved) {
    signIn(saved);
  } else {
    show(false);
  }
})();
