// The web terminal: xterm.js over a WebSocket to the exec endpoint. The token goes in the first
// message (browsers cannot set headers on WebSockets); the server checks the developer role
// and records the session in the audit log.

import { h, clear } from "../dom.js";
import { t } from "../i18n.js";

export function terminalPanel(body, ctx, wanted, token) {
  const running = (ctx.app.status?.containers || []).filter((c) => c.state === "running");
  const status = h("span", { class: "muted", id: "terminal-status" });
  const screen = h("div", { class: "terminal", id: "terminal" });
  const select = h("select", { id: "terminal-replica", "aria-label": t("terminal.replica") },
    running.map((c) => h("option", { value: c.slot, selected: String(c.slot) === wanted }, t("terminal.replicaN", { n: c.slot, name: c.name }))));
  let socket = null;
  let term = null;
  let connection = null; // aborts the listeners of the current connection

  function disconnect() {
    connection?.abort();
    if (socket) {
      socket.onclose = socket.onmessage = null; // a replaced connection reports nothing more
      socket.close();
      status.textContent = t("terminal.closed");
    }
    delete screen.dataset.connected;
    socket = null;
    term?.dispose();
    term = null;
  }

  function connect() {
    disconnect();
    if (!window.Terminal) { status.textContent = t("terminal.missing"); return; }
    clear(screen);
    term = new window.Terminal({ convertEol: false, cursorBlink: true, fontSize: 14, scrollback: 2000 });
    const fit = new window.FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(screen);
    fit.fit();
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const query = new URLSearchParams({ replica: select.value });
    connection = new AbortController();
    let explained = false; // the server's own message about why it closed is shown, not replaced
    socket = new WebSocket(`${proto}://${location.host}/api/v1${ctx.path}/exec?${query}`);
    socket.binaryType = "arraybuffer";
    status.textContent = t("terminal.connecting");
    socket.onopen = () => socket.send(JSON.stringify({ token, cols: term.cols, rows: term.rows }));
    socket.onmessage = (ev) => {
      if (typeof ev.data !== "string") {
        status.textContent = t("terminal.connected");
        screen.dataset.connected = "true";
        term.write(new Uint8Array(ev.data));
        return;
      }
      const msg = JSON.parse(ev.data);
      if (msg.type === "error") { status.textContent = msg.message; explained = true; }
      else if (msg.type === "exit") {
        explained = true;
        status.textContent = t("terminal.exited", { code: msg.code });
        term?.write(`\r\n[${t("terminal.exited", { code: msg.code })}]\r\n`);
      }
    };
    socket.onclose = (ev) => {
      delete screen.dataset.connected;
      if (!explained) status.textContent = ev.code === 1000 ? t("terminal.closed") : `${t("terminal.closed")} (${ev.code}${ev.reason ? `: ${ev.reason}` : ""})`;
    };
    // the server takes at most 64 KiB per message: a long paste goes in pieces (8,000 characters
    // are at most 32 KiB of UTF-8)
    term.onData((data) => {
      for (let i = 0; i < data.length; i += 8000) {
        if (socket?.readyState === 1) socket.send(JSON.stringify({ type: "input", data: data.slice(i, i + 8000) }));
      }
    });
    term.onResize(({ cols, rows }) => socket?.readyState === 1 && socket.send(JSON.stringify({ type: "resize", cols, rows })));
    window.addEventListener("resize", () => fit.fit(), { signal: connection.signal });
    term.focus();
  }

  ctx.signal.addEventListener("abort", disconnect);
  body.append(h("div", { class: "toolbar" }, select,
    h("button", { type: "button", class: "primary", id: "terminal-connect", disabled: !running.length, onclick: connect }, t("terminal.connect")),
    h("button", { type: "button", id: "terminal-disconnect", onclick: disconnect }, t("terminal.disconnect")), status),
  running.length ? screen : h("p", { class: "empty" }, t("terminal.noRunning")));
  if (running.length) connect();
}
