// posthog-llm local viewer: traces, trace tree + timeline, dashboard. Plain JS, no build step.
// Everything shown comes from untrusted LLM text, so the DOM is built with textContent only:
// this file never assigns innerHTML.
"use strict";

(function () {
  const KIND_COLORS = { trace: "#1d4aff", span: "#6b7280", generation: "#f54e00", embedding: "#0a8a4a" };
  const PALETTE = ["#1d4aff", "#f54e00", "#0a8a4a", "#9b51e0", "#f9bd2b", "#00a6c8", "#d6336c", "#7a5c00", "#5c7080"];
  const SVG_NS = "http://www.w3.org/2000/svg";
  // Tree indent levels that fit the label column (18 px each) before the depth is written instead.
  const MAX_INDENT = 12;
  const app = document.getElementById("app");
  let refreshTimer = null;
  let routeToken = 0;

  // -- DOM helpers ---------------------------------------------------------------------------

  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "text") el.textContent = String(value);
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(el.dataset, value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
    append(el, children);
    return el;
  }

  function append(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function svg(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") el.textContent = String(value);
      else el.setAttribute(key, String(value));
    }
    for (const child of children.flat(Infinity)) if (child) el.appendChild(child);
    return el;
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    return el;
  }

  function link(path, ...children) {
    return h("a", { href: path }, ...children);
  }

  function tracePath(id) {
    return "/trace/" + encodeURIComponent(id);
  }

  // -- formatting ----------------------------------------------------------------------------

  const isNum = (v) => typeof v === "number" && isFinite(v);

  function fmtDuration(seconds) {
    if (!isNum(seconds)) return "—";
    if (seconds === 0) return "0";
    if (seconds < 1) return (seconds * 1000).toFixed(seconds < 0.01 ? 2 : 0) + " ms";
    if (seconds < 60) return seconds.toFixed(2) + " s";
    return Math.floor(seconds / 60) + " m " + Math.round(seconds % 60) + " s";
  }

  function fmtCost(usd) {
    if (!isNum(usd)) return "—";
    if (usd === 0) return "$0";
    if (usd >= 1) return "$" + usd.toFixed(2);
    if (usd < 1e-7) return "<$0.0000001";
    // Three significant digits for small amounts: single calls often cost fractions of a cent.
    return "$" + usd.toFixed(Math.min(9, 2 - Math.floor(Math.log10(usd))));
  }

  function fmtInt(n) {
    return isNum(n) ? Math.round(n).toLocaleString("en-US") : "—";
  }

  function fmtTime(value) {
    const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
    if (isNaN(date.getTime())) return value ? String(value) : "—";
    const pad = (n) => String(n).padStart(2, "0");
    return (
      date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) + " " +
      pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds())
    );
  }

  function shortId(id) {
    const text = String(id || "");
    return text.length > 14 ? text.slice(0, 8) + "…" + text.slice(-4) : text;
  }

  function pretty(value) {
    if (typeof value === "string") return value;
    try {
      return JSON.stringify(value, null, 2);
    } catch (e) {
      return String(value);
    }
  }

  // Some senders (the docs' curl example) put JSON text into $ai_input.
  function maybeJson(value) {
    if (typeof value !== "string") return value;
    const text = value.trim();
    if (!(text.startsWith("[") || text.startsWith("{"))) return value;
    try {
      return JSON.parse(text);
    } catch (e) {
      return value;
    }
  }

  function badge(kind) {
    return h("span", { class: "badge kind-" + kind, text: kind });
  }

  // -- data ----------------------------------------------------------------------------------

  async function api(path) {
    const response = await fetch(path, { headers: { Accept: "application/json" } });
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = null;
    }
    if (!response.ok) {
      const error = new Error((body && body.detail) || response.status + " " + response.statusText);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function showError(error) {
    clear(app).appendChild(h("div", { class: "error-box pad", role: "alert" }, "Could not load: ", error.message));
  }

  async function loadInfo() {
    try {
      const info = await api("/api/info");
      const el = document.getElementById("info");
      clear(el);
      append(el, [
        h("span", { id: "info-events", text: fmtInt(info.events) + " events" }),
        " · ",
        h("span", { id: "info-traces", text: fmtInt(info.traces) + " traces" }),
        " in ",
        h("code", { text: info.db }),
        info.pricing_source ? h("span", { class: "muted", title: "Where estimated prices come from", text: " · prices: " + info.pricing_source }) : "",
      ]);
    } catch (e) {
      /* the header line is optional */
    }
  }

  // -- routing -------------------------------------------------------------------------------

  function navigate(path) {
    history.pushState(null, "", path);
    route();
  }

  document.addEventListener("click", (event) => {
    const a = event.target.closest && event.target.closest("a[href]");
    if (!a || a.target || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || url.pathname.startsWith("/api/") || url.pathname.startsWith("/static/")) return;
    event.preventDefault();
    navigate(url.pathname + url.search);
  });
  window.addEventListener("popstate", route);

  function setActiveNav(name) {
    for (const id of ["traces", "dashboard", "events"]) {
      document.getElementById("nav-" + id).classList.toggle("active", id === name);
    }
  }

  // The header's counts follow new events whatever page is shown.
  setInterval(() => {
    if (document.visibilityState === "visible") loadInfo();
  }, 3000);

  function route() {
    routeToken += 1;
    if (refreshTimer) clearInterval(refreshTimer);
    refreshTimer = null;
    const path = location.pathname;
    const params = new URLSearchParams(location.search);
    loadInfo();
    if (path.startsWith("/trace/")) {
      setActiveNav("traces");
      tracePage(decodeURIComponent(path.slice("/trace/".length)));
    } else if (path === "/dashboard") {
      setActiveNav("dashboard");
      dashboardPage(params.get("hours") || "");
    } else if (path === "/events") {
      setActiveNav("events");
      eventsPage();
    } else {
      setActiveNav("traces");
      tracesPage(params.get("search") || "");
    }
  }

  // Re-run `load` every few seconds while this page is shown and the tab is visible.
  function keepFresh(load, seconds) {
    const token = routeToken;
    refreshTimer = setInterval(() => {
      if (token !== routeToken) return;
      if (document.visibilityState === "visible") load().catch(() => {});
    }, seconds * 1000);
  }

  // -- traces list ---------------------------------------------------------------------------

  const PAGE = 200;

  function tracesPage(search) {
    document.title = "Traces · posthog-llm";
    const input = h("input", {
      type: "search",
      id: "search",
      class: "search",
      placeholder: "Search trace id, distinct id, span name or model…",
      "aria-label": "Search traces",
      autocomplete: "off",
      value: search,
    });
    const count = h("span", { class: "muted", id: "trace-count" });
    const body = h("div", { id: "traces-body" }, h("p", { class: "muted", text: "Loading…" }));
    const more = h("button", { type: "button", id: "load-more", class: "load-more", text: "Load more" });
    more.hidden = true;
    clear(app).appendChild(
      h("section", { class: "page" }, h("div", { class: "toolbar" }, h("h1", { text: "Traces" }), input, count), body, more)
    );
    const token = routeToken;
    let current = search;
    let shown = [];
    let total = 0;
    let cursor = null;
    const showCount = () => {
      count.textContent = shown.length === total
        ? fmtInt(total) + (total === 1 ? " trace" : " traces")
        : fmtInt(shown.length) + " of " + fmtInt(total) + " traces";
      more.hidden = !cursor;
    };
    const render = () => {
      clear(body).appendChild(shown.length ? tracesTable(shown) : emptyTraces(current));
      showCount();
    };
    const query = (limit, after) =>
      "/api/traces?limit=" + limit + "&search=" + encodeURIComponent(current) + (after ? "&cursor=" + encodeURIComponent(after) : "");
    // The first pages are fetched again on each poll (new traces appear on top, open ones
    // update); past 1000 loaded rows only the count is refreshed.
    const load = async () => {
      const wanted = Math.min(Math.max(PAGE, shown.length), 1000);
      const searched = current;
      const data = await api(query(wanted, null));
      if (token !== routeToken || searched !== current) return;
      total = data.total;
      if (shown.length <= 1000) {
        shown = data.traces;
        cursor = data.next_cursor;
        render();
      } else {
        showCount();
      }
    };
    const loadMore = async () => {
      if (!cursor) return;
      more.disabled = true;
      try {
        const data = await api(query(PAGE, cursor));
        if (token !== routeToken) return;
        const seen = new Set(shown.map((t) => t.trace_id));
        shown = shown.concat(data.traces.filter((t) => !seen.has(t.trace_id)));
        total = data.total;
        cursor = data.next_cursor;
        render();
      } finally {
        more.disabled = false;
      }
    };
    more.addEventListener("click", () => loadMore().catch(showError));
    let debounce = null;
    input.addEventListener("input", () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => {
        current = input.value.trim();
        shown = [];
        cursor = null;
        const url = current ? "/?search=" + encodeURIComponent(current) : "/";
        history.replaceState(null, "", url);
        load().catch(showError);
      }, 200);
    });
    load().catch(showError);
    keepFresh(load, 3);
  }

  function emptyTraces(search) {
    if (search) return h("p", { class: "muted pad", text: "No trace matches “" + search + "”." });
    const origin = location.origin;
    return h(
      "div",
      { class: "empty" },
      h("h2", { text: "No traces yet" }),
      h("p", { text: "Send events here from any PostHog SDK or posthog-llm, for example:" }),
      h("pre", { class: "code", text: "export POSTHOG_HOST=" + origin + " POSTHOG_API_KEY=phc_local\n" +
        "python -c \"import posthog_llm; c = posthog_llm.Client(); " +
        "c.capture('$ai_generation', distinct_id='me', properties={'$ai_trace_id': 't1', '$ai_model': 'gpt-4o-mini'}); c.shutdown()\"" }),
      h("p", { text: "or run the offline demo: posthog-llm demo" })
    );
  }

  function tracesTable(traces) {
    const head = h("tr", null, ["Time", "Trace", "Distinct ID", "Models", "Events", "Tokens in → out", "Cost", "Latency", "Errors"].map((t, i) => h("th", { class: i >= 4 ? "num" : null, text: t })));
    const rows = traces.map((t) => {
      const row = h(
        "tr",
        { class: "clickable" + (t.errors ? " has-error" : ""), dataset: { traceId: t.trace_id } },
        h("td", { class: "nowrap", text: fmtTime(t.start) }),
        h("td", null, link(tracePath(t.trace_id), h("span", { class: "trace-name", text: t.name || (t.models || [])[0] || "trace" })), h("div", { class: "mono muted small", text: t.trace_id })),
        h("td", { class: "mono small", text: t.distinct_id || "—", title: t.distinct_id || "" }),
        h("td", null, (t.models || []).map((m) => h("span", { class: "chip", text: m }))),
        h("td", { class: "num", title: t.generations + " generations, " + t.embeddings + " embeddings, " + t.spans + " spans", text: t.events }),
        h("td", { class: "num nowrap", text: fmtInt(t.input_tokens) + " → " + fmtInt(t.output_tokens) }),
        h("td", { class: "num", text: fmtCost(t.cost_usd) }),
        h("td", { class: "num", text: fmtDuration(t.latency) }),
        h("td", { class: "num" }, t.errors ? h("span", { class: "err-pill", text: t.errors }) : "0")
      );
      row.addEventListener("click", (event) => {
        if (!event.target.closest("a")) navigate(tracePath(t.trace_id));
      });
      return row;
    });
    return h("table", { class: "grid", id: "traces-table" }, h("thead", null, head), h("tbody", null, rows));
  }

  // -- one trace -----------------------------------------------------------------------------

  async function tracePage(traceId) {
    document.title = "Trace " + traceId + " · posthog-llm";
    clear(app).appendChild(h("p", { class: "muted pad", text: "Loading trace…" }));
    const token = routeToken;
    let data;
    try {
      data = await api("/api/traces/" + encodeURIComponent(traceId));
    } catch (error) {
      if (token === routeToken) showError(error);
      return;
    }
    if (token !== routeToken) return;
    renderTrace(data, null);
    // An open trace follows new events: re-drawn when its event count changes.
    keepFresh(async () => {
      const fresh = await api("/api/traces/" + encodeURIComponent(traceId));
      if (token !== routeToken || fresh.events === data.events) return;
      const current = document.querySelector(".tree-row.selected");
      const uuid = current ? data.nodes[Number(current.dataset.index)].uuid : null;
      data = fresh;
      renderTrace(data, uuid);
    }, 3);
  }

  function renderTrace(data, selectedUuid) {
    // A trace without a $ai_trace event (a bare OpenAI call) is named after its first event.
    const first = data.nodes[0];
    const title = first && first.synthetic && data.nodes[1] ? data.nodes[1].name : data.name || "trace";
    document.title = title + " · posthog-llm";
    const detail = h("aside", { class: "detail", id: "detail" });
    const tree = traceTree(data, detail, selectedUuid);
    const header = h(
      "div",
      { class: "trace-head" },
      link("/", "← Traces"),
      h("h1", null, title, data.errors ? h("span", { class: "err-pill big", text: data.errors + (data.errors === 1 ? " error" : " errors") }) : null),
      h(
        "dl",
        { class: "facts inline" },
        fact("Trace ID", h("span", { class: "mono", text: data.trace_id })),
        fact("Distinct ID", h("span", { class: "mono", text: data.distinct_id || "—" })),
        fact("Started", fmtTime(data.start)),
        fact("Duration", fmtDuration(isNum(data.start) && isNum(data.end) ? data.end - data.start : null)),
        fact("Tokens", fmtInt(data.input_tokens) + " → " + fmtInt(data.output_tokens)),
        fact("Est. cost", fmtCost(data.cost_usd)),
        fact("Events", h("span", { id: "trace-events", text: fmtInt(data.events) })),
        fact("Models", (data.models || []).join(", ") || "—")
      )
    );
    clear(app).appendChild(h("section", { class: "page" }, header, h("div", { class: "trace-layout" }, tree, detail)));
  }

  function fact(label, value) {
    return h("div", { class: "fact" }, h("dt", { text: label }), h("dd", null, value));
  }

  function nodeFacts(node) {
    const p = node.properties || {};
    const bits = [];
    if ((node.kind === "generation" || node.kind === "embedding") && p.$ai_model && p.$ai_model !== node.name) bits.push(String(p.$ai_model));
    if (isNum(p.$ai_input_tokens) || isNum(p.$ai_output_tokens)) bits.push(fmtInt(p.$ai_input_tokens) + "→" + fmtInt(p.$ai_output_tokens) + " tok");
    if (node.cost && isNum(node.cost.total_cost_usd)) bits.push(fmtCost(node.cost.total_cost_usd));
    if (isNum(node.latency)) bits.push(fmtDuration(node.latency));
    return bits.join(" · ");
  }

  function traceTree(data, detail, selectedUuid) {
    const nodes = data.nodes;
    const starts = nodes.map((n) => n.start).filter(isNum);
    const ends = nodes.map((n) => n.end).filter(isNum);
    const t0 = starts.length ? starts.reduce((a, b) => Math.min(a, b)) : 0;
    const t1 = ends.length ? ends.reduce((a, b) => Math.max(a, b)) : t0;
    const span = Math.max(t1 - t0, 1e-6);
    const collapsed = new Set();
    const rows = [];
    let selected = null;

    const axis = h("div", { class: "axis" });
    for (const f of [0, 0.25, 0.5, 0.75, 1]) {
      const tick = h("span", { class: "tick", text: fmtDuration(f * (t1 - t0)) });
      tick.style.left = f * 100 + "%";
      axis.appendChild(tick);
    }

    const select = (index) => {
      if (selected !== null) rows[selected].classList.remove("selected");
      selected = index;
      rows[index].classList.add("selected");
      clear(detail).appendChild(nodeDetail(nodes[index]));
    };

    const hasChildren = (index) => index + 1 < nodes.length && nodes[index + 1].parent === index;

    // Nodes come parent first, so one pass decides (linear even for a 10,000-deep chain).
    const refreshVisibility = () => {
      const hidden = new Array(nodes.length).fill(false);
      nodes.forEach((node, index) => {
        const parent = node.parent;
        hidden[index] = parent !== null && parent !== undefined && (hidden[parent] || collapsed.has(parent));
        rows[index].hidden = hidden[index];
      });
    };

    nodes.forEach((node, index) => {
      const toggle = h("button", { class: "toggle", type: "button", "aria-label": "collapse", text: hasChildren(index) ? "▾" : "" });
      if (!hasChildren(index)) toggle.disabled = true;
      toggle.addEventListener("click", (event) => {
        event.stopPropagation();
        if (collapsed.has(index)) collapsed.delete(index);
        else collapsed.add(index);
        toggle.textContent = collapsed.has(index) ? "▸" : "▾";
        refreshVisibility();
      });
      const label = h(
        "div",
        { class: "tree-label" },
        toggle,
        badge(node.kind),
        h("span", { class: "node-name", text: node.name }),
        node.is_error ? h("span", { class: "err-pill", text: "error" }) : null,
        h("span", { class: "node-facts", text: nodeFacts(node) })
      );
      // Past MAX_INDENT levels the indent stops growing (it must leave the label column room
      // for the name); the depth is shown instead.
      label.style.paddingLeft = Math.min(node.depth, MAX_INDENT) * 18 + 4 + "px";
      if (node.depth > MAX_INDENT) label.insertBefore(h("span", { class: "depth muted small", text: "L" + node.depth + " " }), label.children[1]);
      const bar = h("div", { class: "bar kind-" + node.kind + (node.is_error ? " is-error" : "") });
      if (isNum(node.start) && isNum(node.end)) {
        bar.style.left = ((node.start - t0) / span) * 100 + "%";
        bar.style.width = Math.max(((node.end - node.start) / span) * 100, 0.4) + "%";
        bar.title = fmtDuration(node.end - node.start) + " from +" + fmtDuration(node.start - t0);
      } else {
        bar.classList.add("unknown");
      }
      const row = h("div", { class: "tree-row", role: "treeitem", tabindex: "0", dataset: { kind: node.kind, index: String(index) } }, label, h("div", { class: "lane" }, bar));
      row.addEventListener("click", () => select(index));
      row.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          select(index);
        }
      });
      rows.push(row);
    });

    const container = h(
      "div",
      { class: "tree", id: "trace-tree", role: "tree" },
      h("div", { class: "tree-row tree-header" }, h("div", { class: "tree-label", text: "Span" }), h("div", { class: "lane" }, axis)),
      rows
    );
    // Keep the row selected before a refresh; else start on the first generation.
    const kept = selectedUuid ? nodes.findIndex((n) => n.uuid === selectedUuid) : -1;
    const first = nodes.findIndex((n) => n.kind === "generation");
    select(kept >= 0 ? kept : first >= 0 ? first : 0);
    return container;
  }

  function section(title, content, open) {
    return h("details", { class: "section", open: open !== false }, h("summary", { text: title }), content);
  }

  function renderContent(content) {
    if (content === null || content === undefined) return h("pre", { class: "content muted", text: "(empty)" });
    if (typeof content === "string") return h("pre", { class: "content", text: content });
    if (Array.isArray(content)) {
      return h(
        "div",
        { class: "parts" },
        content.map((part) => {
          if (part && typeof part === "object" && part.type === "text" && typeof part.text === "string") return h("pre", { class: "content", text: part.text });
          if (part && typeof part === "object" && (part.type === "image_url" || part.type === "image")) return h("pre", { class: "content muted", text: "[image]" });
          return renderToolish(part);
        })
      );
    }
    return renderToolish(content);
  }

  function renderToolish(value) {
    if (value && typeof value === "object" && value.type === "function" && value.function) {
      const fn = value.function;
      return h(
        "div",
        { class: "tool-call" },
        h("span", { class: "tool-label", text: "tool call" }),
        h("code", { text: String(fn.name || "") }),
        h("pre", { class: "content", text: pretty(maybeJson(fn.arguments)) })
      );
    }
    return h("pre", { class: "content", text: pretty(value) });
  }

  function renderMessages(value) {
    const data = maybeJson(value);
    if (!Array.isArray(data)) return renderContent(data);
    return h(
      "div",
      { class: "messages" },
      data.map((message) => {
        if (!message || typeof message !== "object" || !("role" in message || "content" in message)) return renderToolish(message);
        const role = String(message.role || "message");
        const calls = Array.isArray(message.tool_calls) ? message.tool_calls : [];
        return h(
          "div",
          { class: "msg role-" + role.replace(/[^a-z_-]/gi, "") },
          h("div", { class: "role", text: role + (message.name ? " · " + message.name : "") + (message.tool_call_id ? " · " + message.tool_call_id : "") }),
          // An assistant turn that only calls tools has empty content: show just the calls.
          "content" in message && !(calls.length && (message.content === "" || message.content === null)) ? renderContent(message.content) : null,
          calls.map(renderToolish)
        );
      })
    );
  }

  function nodeDetail(node) {
    const p = node.properties || {};
    const facts = [];
    const add = (label, value) => {
      if (value !== undefined && value !== null && value !== "") facts.push(fact(label, value));
    };
    add("Event", node.event);
    add("Model", p.$ai_model);
    add("Provider", p.$ai_provider);
    add("Latency", isNum(node.latency) ? fmtDuration(node.latency) : null);
    if (p.$ai_stream) add("Time to first token", fmtDuration(p.$ai_time_to_first_token));
    add("Input tokens", isNum(p.$ai_input_tokens) ? fmtInt(p.$ai_input_tokens) : null);
    add("Output tokens", isNum(p.$ai_output_tokens) ? fmtInt(p.$ai_output_tokens) : null);
    add("Cache read tokens", isNum(p.$ai_cache_read_input_tokens) ? fmtInt(p.$ai_cache_read_input_tokens) : null);
    add("Reasoning tokens", isNum(p.$ai_reasoning_tokens) ? fmtInt(p.$ai_reasoning_tokens) : null);
    if (node.cost) {
      const source = node.cost.source === "estimate"
        ? " (estimate, " + node.cost.model + " prices from " + (node.cost.price_source || "the price table") + ")"
        : " (sent with the event)";
      add("Cost", fmtCost(node.cost.total_cost_usd) + source);
    }
    add("HTTP status", p.$ai_http_status);
    add("Stop reason", p.$ai_stop_reason);
    add("Base URL", p.$ai_base_url);
    add("Framework", p.$ai_framework);
    add("Time", node.timestamp ? fmtTime(node.timestamp) : null);
    add("Distinct ID", node.distinct_id);
    add("Span ID", p.$ai_span_id ? h("span", { class: "mono", text: p.$ai_span_id }) : null);
    add("Parent ID", p.$ai_parent_id ? h("span", { class: "mono", text: p.$ai_parent_id }) : null);
    add("Session ID", p.$ai_session_id);

    const parts = [
      h("h2", null, badge(node.kind), " ", node.name),
      node.synthetic ? h("p", { class: "muted", text: "No $ai_trace event was sent for this trace; its children are shown under this placeholder." }) : null,
      node.is_error ? h("div", { class: "error-box" }, h("strong", { text: "Error: " }), String(p.$ai_error || "error")) : null,
      h("dl", { class: "facts" }, facts),
    ];
    if ("$ai_input" in p) parts.push(section("Input", renderMessages(p.$ai_input)));
    if ("$ai_output_choices" in p) parts.push(section("Output", renderMessages(p.$ai_output_choices)));
    if ("$ai_input_state" in p) parts.push(section("Input state", renderContent(maybeJson(p.$ai_input_state))));
    if ("$ai_output_state" in p) parts.push(section("Output state", renderContent(maybeJson(p.$ai_output_state))));
    if ("$ai_tools" in p) parts.push(section("Tools", renderContent(p.$ai_tools), false));
    if ("$ai_model_parameters" in p) parts.push(section("Model parameters", renderContent(p.$ai_model_parameters), false));
    parts.push(section("All properties", h("pre", { class: "content", text: pretty(p) }), false));
    return h("div", { class: "detail-inner" }, parts);
  }

  // -- dashboard -----------------------------------------------------------------------------

  async function dashboardPage(hours) {
    document.title = "Dashboard · posthog-llm";
    const range = h(
      "select",
      { id: "range", "aria-label": "Time range" },
      [["", "All time"], ["1", "Last hour"], ["24", "Last 24 hours"], ["168", "Last 7 days"], ["720", "Last 30 days"]].map(([value, label]) =>
        h("option", { value, selected: value === hours, text: label })
      )
    );
    range.addEventListener("change", () => navigate("/dashboard" + (range.value ? "?hours=" + range.value : "")));
    const body = h("div", { id: "dashboard-body" }, h("p", { class: "muted", text: "Loading…" }));
    clear(app).appendChild(h("section", { class: "page" }, h("div", { class: "toolbar" }, h("h1", { text: "Dashboard" }), range), body));
    const token = routeToken;
    const load = async () => {
      const data = await api("/api/stats" + (hours ? "?hours=" + encodeURIComponent(hours) : ""));
      if (token !== routeToken) return;
      clear(body).appendChild(dashboard(data));
    };
    load().catch(showError);
    keepFresh(load, 10);
  }

  function dashboard(data) {
    if (!data.models.length) return h("p", { class: "muted pad", text: "No generations or embeddings yet." });
    const models = data.models.slice(0, PALETTE.length);
    const color = (i) => PALETTE[i % PALETTE.length];
    const t = data.totals;
    const cards = h(
      "div",
      { class: "cards" },
      card("Calls", fmtInt(t.calls)),
      card("Errors", fmtInt(t.errors)),
      card("Tokens in → out", fmtInt(t.input_tokens) + " → " + fmtInt(t.output_tokens)),
      card("Estimated cost", fmtCost(t.cost_usd)),
      card("Models", fmtInt(data.models.length))
    );
    const legend = h(
      "div",
      { class: "legend" },
      models.map((m, i) => {
        const swatch = h("span", { class: "swatch" });
        swatch.style.background = color(i);
        return h("span", { class: "legend-item" }, swatch, m.model);
      })
    );
    const charts = h(
      "div",
      { class: "charts" },
      chart("Estimated cost over time", data, models, color, "cost_usd", fmtCost, "bars"),
      chart("Tokens (in + out) over time", data, models, color, "tokens", fmtInt, "bars"),
      chart("Average latency over time", data, models, color, "latency_avg", fmtDuration, "line"),
      chart("Errors over time", data, models, color, "errors", fmtInt, "bars")
    );
    const perModel = h(
      "div",
      { class: "charts", id: "per-model" },
      modelBars("Estimated cost by model", models, color, (m) => m.cost_usd, fmtCost),
      modelBars("Tokens by model", models, color, (m) => m.input_tokens + m.output_tokens, fmtInt),
      modelBars("Average latency by model", models, color, (m) => m.latency_avg, fmtDuration),
      modelBars("Errors by model", models, color, (m) => m.errors, fmtInt)
    );
    const table = h(
      "table",
      { class: "grid", id: "models-table" },
      h("thead", null, h("tr", null, ["Model", "Calls", "Errors", "Avg latency", "p50", "p95", "Input tokens", "Output tokens", "Est. cost"].map((x, i) => h("th", { class: i ? "num" : null, text: x })))),
      h(
        "tbody",
        null,
        data.models.map((m) =>
          h(
            "tr",
            null,
            h("td", { text: m.model }),
            h("td", { class: "num", text: fmtInt(m.calls) }),
            h("td", { class: "num", text: fmtInt(m.errors) }),
            h("td", { class: "num", text: fmtDuration(m.latency_avg) }),
            h("td", { class: "num", text: fmtDuration(m.latency_p50) }),
            h("td", { class: "num", text: fmtDuration(m.latency_p95) }),
            h("td", { class: "num", text: fmtInt(m.input_tokens) }),
            h("td", { class: "num", text: fmtInt(m.output_tokens) }),
            h("td", { class: "num", text: fmtCost(m.cost_usd) })
          )
        )
      )
    );
    const note = h("p", { class: "muted small", text: "One point or bar per " + fmtBucket(data.bucket_seconds) + ". Costs are estimates from " + (data.pricing_source || "the bundled price table") + ", unless an event carried its own cost; they are never sent to PostHog." + (data.approximate_percentiles ? " p50/p95 are read from a latency histogram (±5%)." : "") });
    return h("div", null, cards, legend, charts, perModel, table, note);
  }

  function fmtBucket(seconds) {
    const units = [[30 * 86400, "30 days"], [7 * 86400, "week"], [86400, "day"], [3600, "hour"], [60, "minute"], [1, "second"]];
    for (const [size, name] of units) {
      if (seconds >= size && seconds % size === 0) {
        const n = seconds / size;
        return n === 1 ? name : n + " " + name + "s";
      }
    }
    return fmtDuration(seconds);
  }

  function card(label, value) {
    return h("div", { class: "card" }, h("div", { class: "card-label", text: label }), h("div", { class: "card-value", text: value }));
  }

  // One horizontal bar per model: its total (or average) over the chosen range.
  function modelBars(title, models, color, value, fmt) {
    const W = 420, row = 22, L = 150, R = 70;
    const H = Math.max(models.length, 1) * row + 8;
    const values = models.map((m) => (isNum(value(m)) ? value(m) : null));
    const max = values.reduce((a, v) => (isNum(v) ? Math.max(a, v) : a), 0);
    const root = svg("svg", { viewBox: "0 0 " + W + " " + H, class: "chart-svg bars-by-model", role: "img", "aria-label": title });
    models.forEach((m, i) => {
      const y = 4 + i * row;
      const name = m.model.length > 22 ? m.model.slice(0, 21) + "…" : m.model;
      root.appendChild(svg("text", { x: L - 6, y: y + 14, "text-anchor": "end", class: "axis-text", text: name }));
      const v = values[i];
      const width = isNum(v) && max ? Math.max(((W - L - R) * v) / max, v ? 1 : 0) : 0;
      const rect = svg("rect", { x: L, y: y + 3, width, height: row - 8, fill: color(i) });
      rect.appendChild(svg("title", { text: m.model + ": " + fmt(v) }));
      root.appendChild(rect);
      root.appendChild(svg("text", { x: L + width + 4, y: y + 14, class: "axis-text", text: fmt(v) }));
    });
    return h("figure", { class: "chart" }, h("figcaption", { text: title }), root);
  }

  // A small SVG chart: one line per model, or stacked bars per bucket.
  function chart(title, data, models, color, key, fmt, kind) {
    const W = 420, H = 180, L = 72, R = 10, T = 10, B = 26;
    const n = data.buckets.length;
    const series = models.map((m) => m.series[key] || []);
    let max = 0;
    for (let i = 0; i < n; i++) {
      if (kind === "bars") max = Math.max(max, series.reduce((s, v) => s + (isNum(v[i]) ? v[i] : 0), 0));
      else for (const v of series) if (isNum(v[i])) max = Math.max(max, v[i]);
    }
    const root = svg("svg", { viewBox: "0 0 " + W + " " + H, class: "chart-svg", role: "img", "aria-label": title });
    const x = (i) => L + (n <= 1 ? (W - L - R) / 2 : (i * (W - L - R)) / (n - 1));
    const y = (v) => T + (H - T - B) * (1 - (max ? v / max : 0));
    root.appendChild(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis-line" }));
    root.appendChild(svg("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis-line" }));
    root.appendChild(svg("text", { x: L - 4, y: T + 8, "text-anchor": "end", class: "axis-text", text: fmt(max) }));
    root.appendChild(svg("text", { x: L - 4, y: H - B, "text-anchor": "end", class: "axis-text", text: fmt(0) }));
    // "MM-DD HH:MM", or "HH:MM:SS" when the buckets are shorter than a minute.
    const when = (iso) => (data.bucket_seconds < 60 ? fmtTime(iso).slice(11, 19) : fmtTime(iso).slice(5, 16));
    if (n) {
      root.appendChild(svg("text", { x: L, y: H - 8, "text-anchor": "start", class: "axis-text", text: when(data.buckets[0]) }));
      if (n > 1) root.appendChild(svg("text", { x: W - R, y: H - 8, "text-anchor": "end", class: "axis-text", text: when(data.buckets[n - 1]) }));
    }
    if (kind === "bars") {
      const slot = (W - L - R) / Math.max(n, 1);
      const width = Math.min(Math.max(slot * 0.7, 1), 56);
      for (let i = 0; i < n; i++) {
        let base = 0;
        series.forEach((values, m) => {
          const v = isNum(values[i]) ? values[i] : 0;
          if (!v) return;
          const top = y(base + v);
          const bottom = y(base);
          const rect = svg("rect", { x: L + i * slot + (slot - width) / 2, y: top, width, height: Math.max(bottom - top, 0.5), fill: color(m) });
          rect.appendChild(svg("title", { text: models[m].model + ": " + fmt(v) + " at " + fmtTime(data.buckets[i]) }));
          root.appendChild(rect);
          base += v;
        });
      }
    } else {
      series.forEach((values, m) => {
        const points = [];
        values.forEach((v, i) => {
          if (isNum(v)) points.push([x(i), y(v), v, i]);
        });
        if (points.length > 1) {
          root.appendChild(svg("polyline", { points: points.map((p) => p[0] + "," + p[1]).join(" "), fill: "none", stroke: color(m), "stroke-width": 2 }));
        }
        for (const [px, py, v, i] of points) {
          const dot = svg("circle", { cx: px, cy: py, r: 3, fill: color(m) });
          dot.appendChild(svg("title", { text: models[m].model + ": " + fmt(v) + " at " + fmtTime(data.buckets[i]) }));
          root.appendChild(dot);
        }
      });
    }
    return h("figure", { class: "chart" }, h("figcaption", { text: title }), root);
  }

  // -- raw events ----------------------------------------------------------------------------

  function eventsPage() {
    document.title = "Events · posthog-llm";
    const body = h("div", { id: "events-body" }, h("p", { class: "muted", text: "Loading…" }));
    clear(app).appendChild(h("section", { class: "page" }, h("div", { class: "toolbar" }, h("h1", { text: "Latest events" })), body));
    const token = routeToken;
    const load = async () => {
      const data = await api("/api/events?limit=200");
      if (token !== routeToken) return;
      if (!data.events.length) {
        clear(body).appendChild(h("p", { class: "muted pad", text: "No events yet." }));
        return;
      }
      const rows = data.events.map((e) => {
        const props = e.properties || {};
        const traceId = props.$ai_trace_id;
        return h(
          "tr",
          null,
          h("td", { class: "nowrap", text: fmtTime(e.timestamp) }),
          h("td", null, h("code", { text: e.event })),
          h("td", { class: "mono small", text: e.distinct_id || "—" }),
          h("td", { class: "mono small" }, traceId ? link(tracePath(traceId), shortId(traceId)) : "—"),
          h("td", null, h("details", null, h("summary", { text: Object.keys(props).length + " properties" }), h("pre", { class: "content", text: pretty(props) })))
        );
      });
      clear(body).appendChild(
        h("table", { class: "grid", id: "events-table" }, h("thead", null, h("tr", null, ["Time", "Event", "Distinct ID", "Trace", "Properties"].map((x) => h("th", { text: x })))), h("tbody", null, rows))
      );
    };
    load().catch(showError);
  }

  route();
})();
