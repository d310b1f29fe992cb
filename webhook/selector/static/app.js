// The image selector page: plain JavaScript, no build step, no third-party code.
// Everything that comes from the API (registry data, hostile by assumption) is put into the
// page with textContent or as attribute values, never as HTML.
"use strict";

(function () {
  const TOKEN_KEY = "spacegate.token";
  const LIMIT = 50;
  const $ = (id) => document.getElementById(id);
  const state = { namespace: "", space: null, repository: null, repoPage: 1, tagPage: 1, query: "", pullSecret: "registry-secret" };

  function token() { return sessionStorage.getItem(TOKEN_KEY); }

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function setStatus(text, kind) {
    const node = $("status");
    node.textContent = text || "";
    node.className = "status" + (kind ? " " + kind : "");
  }

  function clear(list) { while (list.firstChild) list.removeChild(list.firstChild); }

  function emptyRow(list, text) { const li = el("li", text, "empty"); list.appendChild(li); }

  async function api(path) {
    const response = await fetch(path, {
      headers: { "Authorization": "Bearer " + token(), "Accept": "application/json" },
      cache: "no-store", credentials: "omit",
    });
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      const message = body && typeof body.message === "string" ? body.message : response.status + " " + response.statusText;
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function failed(error, list) {
    let text = error.message;
    if (error.status === 401) text = "Not signed in: " + text;
    if (error.status === 403) text = "Not allowed: " + text;
    setStatus(text, "error");
    if (list) { clear(list); emptyRow(list, error.status === 404 ? "Nothing here for this namespace." : "Could not load."); }
    if (error.status === 401) showLogin();
  }

  function freshness(body) {
    if (body.stale) setStatus("Showing cached data from " + Math.round(body.ageSeconds) + "s ago: the registry did not answer (" + (body.error || "unknown error") + ")", "stale");
  }

  function pick(list, button) {
    for (const other of list.querySelectorAll("button[aria-pressed]")) other.setAttribute("aria-pressed", "false");
    button.setAttribute("aria-pressed", "true");
  }

  function item(list, title, meta, onChoose, badge) {
    const li = el("li");
    const button = el("button");
    button.type = "button";
    button.setAttribute("aria-pressed", "false");
    button.appendChild(el("span", title));
    if (badge) button.appendChild(el("span", badge, "badge"));
    if (meta) button.appendChild(el("span", meta, "meta"));
    button.addEventListener("click", () => { pick(list, button); onChoose(); });
    li.appendChild(button);
    list.appendChild(li);
    return button;
  }

  function base() { return "/api/v1/namespaces/" + encodeURIComponent(state.namespace); }

  async function loadSpaces() {
    const list = $("spaces");
    clear(list); clear($("repositories")); clear($("tags"));
    $("chosen").hidden = true;
    emptyRow(list, "Loading…");
    setStatus("Loading spaces of " + state.namespace + "…");
    try {
      const body = await api(base() + "/spaces");
      clear(list);
      state.pullSecret = body.pullSecret;
      setStatus(body.items.length + " spaces usable in " + body.namespace + " (workspace " + (body.workspace || "none") + ")");
      if (!body.items.length) emptyRow(list, "This namespace may use no space.");
      for (const space of body.items) {
        const name = space.registry + " / " + space.space;
        const meta = space.host + " · " + space.why + (space.needsPullSecret ? " · pull secret " + body.pullSecret : "");
        item(list, name, meta, () => { state.space = space; state.repoPage = 1; loadRepositories(); }, space.visibility);
      }
    } catch (error) { failed(error, list); }
  }

  async function loadRepositories() {
    const list = $("repositories");
    clear(list); clear($("tags")); $("chosen").hidden = true;
    emptyRow(list, "Loading…");
    const space = state.space;
    const query = new URLSearchParams({ registry: space.registry, space: space.space === "*" ? "" : space.space, q: state.query, page: String(state.repoPage), limit: String(LIMIT) });
    if (space.space === "*") query.delete("space");
    try {
      const body = await api(base() + "/repositories?" + query.toString());
      clear(list);
      setStatus(body.total + " repositories in " + space.registry + " / " + space.space);
      freshness(body);
      if (!body.items.length) emptyRow(list, state.query ? "No repository matches “" + state.query + "”." : "No repositories in this space.");
      for (const repo of body.items) {
        const meta = [repo.artifactCount !== null && repo.artifactCount !== undefined ? repo.artifactCount + " artifacts" : null, repo.updated ? "updated " + repo.updated.slice(0, 19).replace("T", " ") : null].filter(Boolean).join(" · ");
        item(list, repo.name, meta, () => { state.repository = repo; state.tagPage = 1; loadTags(); });
      }
      pager("repo", body, (page) => { state.repoPage = page; loadRepositories(); });
    } catch (error) { failed(error, list); }
  }

  async function loadTags() {
    const list = $("tags");
    clear(list); $("chosen").hidden = true;
    emptyRow(list, "Loading…");
    const repo = state.repository;
    const path = base() + "/repositories/" + encodeURIComponent(repo.registry) + "/" + repo.name.split("/").map(encodeURIComponent).join("/") + "/tags?page=" + state.tagPage + "&limit=" + LIMIT;
    try {
      const body = await api(path);
      clear(list);
      setStatus(body.total + " tags of " + body.image);
      freshness(body);
      if (!body.items.length) emptyRow(list, "No tags in this repository.");
      for (const tag of body.items) {
        const meta = [tag.digest ? tag.digest.slice(0, 19) + "…" : null, tag.pushed ? "pushed " + tag.pushed.slice(0, 19).replace("T", " ") : null, typeof tag.size === "number" ? (tag.size / 1048576).toFixed(1) + " MiB" : null].filter(Boolean).join(" · ");
        item(list, tag.name, meta, () => choose(body, tag));
      }
      pager("tag", body, (page) => { state.tagPage = page; loadTags(); });
    } catch (error) { failed(error, list); }
  }

  function pager(prefix, body, go) {
    const pages = Math.max(1, Math.ceil(body.total / body.limit));
    $(prefix + "-page").textContent = "page " + body.page + " of " + pages;
    const prev = $(prefix + "-prev"), next = $(prefix + "-next");
    prev.disabled = body.page <= 1; next.disabled = body.page >= pages;
    prev.onclick = () => go(body.page - 1);
    next.onclick = () => go(body.page + 1);
  }

  function workloadName(repository) {
    const last = repository.split("/").pop().toLowerCase().replace(/[^a-z0-9-]+/g, "-").replace(/^-+|-+$/g, "");
    return (last || "app").slice(0, 50);
  }

  function choose(body, tag) {
    const name = workloadName(body.repository);
    const reference = tag.reference;
    $("ref-tag").textContent = reference;
    $("ref-digest").textContent = tag.digestReference || "(the registry did not say this tag's digest)";
    $("copy-digest").disabled = !tag.digestReference;
    const kubectl = "kubectl create deployment " + name + " --image=" + reference + " -n " + state.namespace;
    $("kubectl").textContent = kubectl;
    const lines = [
      "apiVersion: apps/v1",
      "kind: Deployment",
      "metadata:",
      "  name: " + name,
      "  namespace: " + state.namespace,
      "spec:",
      "  replicas: 1",
      "  selector:",
      "    matchLabels: {app: " + name + "}",
      "  template:",
      "    metadata:",
      "      labels: {app: " + name + "}",
      "    spec:",
    ];
    if (body.needsPullSecret) lines.push("      imagePullSecrets:", "        - name: " + JSON.stringify(body.pullSecret));
    lines.push("      containers:", "        - name: " + name, "          image: " + JSON.stringify(tag.digestReference || reference));
    $("yaml").textContent = lines.join("\n") + "\n";
    $("secret-note").textContent = body.needsPullSecret
      ? "Pulling it needs the pull secret " + body.pullSecret + " (spacegate adds it to new Pods; the YAML names it)."
      : "Pulling it needs no credentials.";
    $("copied").textContent = "";
    $("chosen").hidden = false;
    $("copy-tag").focus();
  }

  async function copy(text) {
    try { await navigator.clipboard.writeText(text); $("copied").textContent = "Copied: " + text.split("\n")[0]; }
    catch (e) { $("copied").textContent = "Copy failed; select the text and copy it by hand."; }
  }

  function showLogin() {
    $("login").hidden = false; $("browser").hidden = true; $("logout").hidden = true; $("who").hidden = true;
    $("token").focus();
  }

  function showBrowser() {
    $("login").hidden = true; $("browser").hidden = false; $("logout").hidden = false;
    $("namespace").focus();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token").value.trim();
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      $("token").value = "";
      showBrowser();
    });
    $("logout").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); showLogin(); });
    $("ns-form").addEventListener("submit", (event) => {
      event.preventDefault();
      state.namespace = $("namespace").value.trim();
      state.query = ""; $("search").value = "";
      if (state.namespace) loadSpaces();
    });
    let timer = null;
    $("search").addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => { state.query = $("search").value.trim(); state.repoPage = 1; if (state.space) loadRepositories(); }, 250);
    });
    $("search-form").addEventListener("submit", (event) => event.preventDefault());
    $("copy-tag").addEventListener("click", () => copy($("ref-tag").textContent));
    $("copy-digest").addEventListener("click", () => copy($("ref-digest").textContent));
    $("copy-kubectl").addEventListener("click", () => copy($("kubectl").textContent));
    $("copy-yaml").addEventListener("click", () => copy($("yaml").textContent));
    if (token()) showBrowser(); else showLogin();
  });
})();
