// The floodwall operator console.
//
// Everything it shows comes from the admin API's JSON routes, called with the operator's
// token from sessionStorage as a bearer header: never in a URL, a cookie or a log. Routes
// are named relative to the page (the page is {mount}/console, the routes {mount}/...), so
// the console works wherever the admin app is mounted.
//
// Ids, reasons, actors and details are anyone's text: they are only ever set as text
// (textContent, append of strings, attribute values), inside <bdi> so a bidi control in
// an id cannot reorder what follows it, and looked up by comparing strings, never by
// building a selector. Nothing here parses HTML.

const TOKEN_KEY = "floodwall-admin-token";
const TOP_EVERY_MS = 2000;
const LISTS_EVERY_MS = 10000;
const TOP_LIMIT = 25;
const PAGE_SIZE = 25;
// Ids longer than this many characters are shown as their start, "…" and their end; the
// title, and every action, carry the whole id.
const SHOWN_MAX = 48;
const SHOWN_HEAD = 32;
const SHOWN_TAIL = 12;
// How the store reports a subject too long to hold whole (floodwall.core.ids.held): its
// first 64 characters, "…#" and 32 hex digits. It names no user an action could reach.
const HELD = /…#[0-9a-f]{32}$/u;
const HELD_LENGTH = 98;
// Characters that print as nothing or move other text: controls, format characters (the
// bidi controls among them), separators other than the space, surrogates, unassigned.
const INVISIBLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}]|[^\P{Zs} ]/u;
const WINDOWS = new Map([
  ["60", "the last minute"],
  ["600", "the last 10 minutes"],
  ["3600", "the last hour"],
]);
const UNITS = new Map([["", 1], ["s", 1], ["m", 60], ["h", 3600], ["d", 86400]]);

const byId = (id) => document.getElementById(id);
const ui = {
  signInSection: byId("sign-in-section"),
  signIn: byId("sign-in"),
  token: byId("token"),
  signInError: byId("sign-in-error"),
  session: byId("session"),
  signOut: byId("sign-out"),
  console: byId("console"),
  notice: byId("notice"),
  reason: byId("reason"),
  ttl: byId("ttl"),
  window: byId("window"),
  blockSelected: byId("block-selected"),
  selectedCount: byId("selected-count"),
  selectAll: byId("select-all"),
  topUpdated: byId("top-updated"),
  top: byId("top"),
  topEmpty: byId("top-empty"),
  topNetworks: byId("top-networks"),
  topNetworksEmpty: byId("top-networks-empty"),
  lookup: byId("lookup"),
  userId: byId("user_id"),
  statusEmpty: byId("status-empty"),
  status: byId("status"),
  statusFields: byId("status-fields"),
  block: byId("block"),
  unblock: byId("unblock"),
  revoke: byId("revoke"),
  passwordReset: byId("password-reset"),
  blocked: byId("blocked"),
  blockedEmpty: byId("blocked-empty"),
  blockedFirst: byId("blocked-first"),
  blockedNext: byId("blocked-next"),
  networkForm: byId("network-form"),
  cidr: byId("cidr"),
  force: byId("force"),
  networks: byId("networks"),
  networksEmpty: byId("networks-empty"),
  audit: byId("audit"),
  auditEmpty: byId("audit-empty"),
  auditNewest: byId("audit-newest"),
  auditOlder: byId("audit-older"),
};

// -- state -------------------------------------------------------------------------------

let token = null;
// Bumped at every sign-in and sign-out: an answer that arrives for an older session is
// dropped, so nothing shows after signing out.
let session = 0;
let timers = [];
const ticked = new Set();
let topShown = null;
let currentUser = null;
let blockedPages = [null];
let blockedNext = null;
let auditPages = [null];
let auditNext = null;
const busy = new Set();

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

class InputError extends Error {}

// An answer for a session that has ended (signed out, or in again): shown nowhere.
class Stale extends Error {}

// -- the admin API -----------------------------------------------------------------------

// A user id as one path segment or query value: UTF-8, percent-encoded, a lone surrogate
// as the admin API reads it (UTF-8 with surrogates passed through: U+D800 is %ED%A0%80),
// where encodeURIComponent would throw.
function encodeId(text) {
  let encoded = "";
  for (const char of text) {
    const code = char.codePointAt(0);
    if (code >= 0xd800 && code <= 0xdfff) {
      const bytes = [0xe0 | (code >> 12), 0x80 | ((code >> 6) & 0x3f), 0x80 | (code & 0x3f)];
      encoded += bytes.map((byte) => "%" + byte.toString(16).toUpperCase()).join("");
    } else {
      encoded += encodeURIComponent(char);
    }
  }
  return encoded;
}

// The empty id fits no path, and "." or ".." would be resolved away as path segments:
// those go in the query form, which the admin API accepts for any id.
function userPath(userId, suffix = "") {
  if (userId === "" || userId === "." || userId === "..") {
    return `users/-${suffix}?user_id=${encodeId(userId)}`;
  }
  return `users/${encodeId(userId)}${suffix}`;
}

function networkPath(cidr) {
  return `networks/${encodeURIComponent(cidr)}/block`;
}

function problemText(response, data) {
  if (data === null || typeof data !== "object") {
    return `The admin API answered ${response.status} ${response.statusText}.`;
  }
  let text = [data.title, data.detail].filter(Boolean).join(": ");
  if (Array.isArray(data.errors)) {
    text += " " + data.errors.map((error) => `${error.loc}: ${error.msg}`).join("; ");
  }
  const retry = response.headers.get("retry-after");
  if (retry !== null && response.status === 429) {
    text += ` Try again in ${retry} s.`;
  }
  return text || `The admin API answered ${response.status}.`;
}

async function call(method, path, body) {
  const mine = session;
  let headers;
  try {
    headers = new Headers({ Authorization: `Bearer ${token}`, Accept: "application/json" });
  } catch {
    throw new ApiError(401, "That admin token holds characters an HTTP header cannot carry.");
  }
  const init = { method, headers, cache: "no-store", credentials: "omit", redirect: "error" };
  if (body !== undefined) {
    headers.set("Content-Type", "application/json");
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(new URL(path, document.baseURI), init);
  } catch {
    throw new ApiError(0, "The admin API did not answer: check the connection and retry.");
  }
  const data = await response.json().catch(() => null);
  if (mine !== session) {
    throw new Stale();
  }
  if (!response.ok) {
    throw new ApiError(response.status, problemText(response, data));
  }
  return data;
}

// -- text --------------------------------------------------------------------------------

function shortened(text) {
  const chars = Array.from(text);
  if (chars.length <= SHOWN_MAX) {
    return text;
  }
  return chars.slice(0, SHOWN_HEAD).join("") + "…" + chars.slice(-SHOWN_TAIL).join("");
}

function isHeld(subject) {
  return Array.from(subject).length === HELD_LENGTH && HELD.test(subject);
}

// Someone's text, isolated from what surrounds it, and marked when it holds characters
// that print as nothing.
function textOf(text) {
  const element = document.createElement("bdi");
  element.textContent = text;
  if (INVISIBLE.test(text)) {
    element.classList.add("invisible-chars");
  }
  return element;
}

// An id (or a network): shortened when long, whole in the title.
function idOf(text) {
  const element = textOf(shortened(text));
  element.classList.add("id");
  element.title = text;
  if (INVISIBLE.test(text)) {
    element.classList.add("invisible-chars");
  }
  return element;
}

function maybe(text) {
  return text === null || text === undefined || text === "" ? "—" : textOf(String(text));
}

function timeOf(iso) {
  if (!iso) {
    return "—";
  }
  const time = new Date(iso);
  return Number.isNaN(time.getTime()) ? iso : time.toISOString().slice(0, 19).replace("T", " ");
}

function plural(count, one, many) {
  return `${count} ${count === 1 ? one : many}`;
}

function cell(...children) {
  const element = document.createElement("td");
  element.append(...children);
  return element;
}

// A row's button; its accessible name starts with its visible text and names the row.
function button(text, onClick, label) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = text;
  if (label !== undefined) {
    element.setAttribute("aria-label", label);
  }
  element.addEventListener("click", onClick);
  return element;
}

function showEmpty(table, empty, rows, text) {
  table.tBodies[0].replaceChildren(...rows);
  empty.textContent = text;
  empty.hidden = rows.length > 0;
}

// -- notices -----------------------------------------------------------------------------

function notify(kind, ...parts) {
  ui.notice.className = `notice ${kind}`;
  ui.notice.replaceChildren(...parts);
}

// What every change answers: how many app workers received it.
function delivery(receivedBy) {
  if (receivedBy === null || receivedBy === undefined) {
    return [
      "warn",
      " Stored, but the store could not count the app workers that received it " +
        "(received_by: null; the app's log says why).",
    ];
  }
  if (receivedBy === 0) {
    return [
      "warn",
      " Stored, but no running app received it (received_by: 0): check that the apps use " +
        "this store and key prefix.",
    ];
  }
  const workers = plural(receivedBy, "app worker", "app workers");
  return ["ok", ` Received by ${workers} (received_by: ${receivedBy}).`];
}

function confirmChange(receivedBy, ...what) {
  const [kind, text] = delivery(receivedBy);
  notify(kind, ...what, text);
}

function failed(error) {
  if (error instanceof Stale) {
    return;
  }
  if (error instanceof ApiError && error.status === 401) {
    signOut("The admin token was refused (it may have been changed): enter a valid one.");
    return;
  }
  notify("error", error.message);
}

// -- inputs ------------------------------------------------------------------------------

function reasonFor(required) {
  const reason = ui.reason.value.trim();
  if (reason === "" && required) {
    ui.reason.focus();
    throw new InputError("Reason: give a reason to block (it goes into the audit log).");
  }
  return reason === "" ? null : reason;
}

function ttlSeconds() {
  const text = ui.ttl.value.trim();
  if (text === "") {
    return null;
  }
  const match = /^(\d+(?:\.\d+)?)\s*([smhd]?)$/iu.exec(text);
  if (match === null) {
    ui.ttl.focus();
    throw new InputError(
      "For (ttl): a number of seconds, or a number followed by s, m, h or d (90s, 15m, 1h, 2d).",
    );
  }
  return Number(match[1]) * UNITS.get(match[2].toLowerCase());
}

function untilText(until) {
  return until ? ` until ${timeOf(until)} UTC` : " until unblocked";
}

// Runs an action once at a time, and reports what went wrong in the notice.
async function act(name, action) {
  if (busy.has(name)) {
    return;
  }
  busy.add(name);
  try {
    await action();
  } catch (error) {
    failed(error);
  } finally {
    busy.delete(name);
  }
}

// -- top ---------------------------------------------------------------------------------

function topPath() {
  return `top?window=${encodeURIComponent(ui.window.value)}&limit=${TOP_LIMIT}`;
}

function tickable(item) {
  return !item.anonymous && !isHeld(item.subject);
}

function updateTicked() {
  ui.selectedCount.textContent = ticked.size === 0 ? "None ticked" : `${ticked.size} ticked`;
  ui.blockSelected.disabled = ticked.size === 0;
  const boxes = Array.from(ui.top.tBodies[0].querySelectorAll("input[type=checkbox]"));
  const enabled = boxes.filter((box) => !box.disabled);
  ui.selectAll.checked = enabled.length > 0 && enabled.every((box) => box.checked);
}

function fillNetwork(network) {
  ui.cidr.value = network;
  ui.cidr.focus();
}

function addressNetwork(address) {
  return address.includes(":") ? `${address}/128` : `${address}/32`;
}

function topRow(item) {
  const row = document.createElement("tr");
  row.dataset.subject = item.subject;
  const box = document.createElement("input");
  box.type = "checkbox";
  box.dataset.control = "tick";
  box.checked = ticked.has(item.subject);
  box.disabled = !tickable(item);
  box.setAttribute("aria-label", `Tick ${shortened(item.subject)}`);
  box.addEventListener("change", () => {
    if (box.checked) {
      ticked.add(item.subject);
    } else {
      ticked.delete(item.subject);
    }
    updateTicked();
  });
  let kind = item.anonymous ? "address" : "user";
  let open;
  if (item.anonymous) {
    open = button("Fill network", () => fillNetwork(addressNetwork(item.subject)),
      `Fill network of ${shortened(item.subject)}`);
  } else if (isHeld(item.subject)) {
    kind = "user (long id, shortened by the store)";
    open = "";
  } else {
    open = button("Open", () => openUser(item.subject), `Open ${shortened(item.subject)}`);
  }
  if (open !== "") {
    open.dataset.control = "open";
  }
  const refusals = cell(item.refusals.toLocaleString("en"));
  refusals.className = "number";
  row.append(cell(box), cell(idOf(item.subject)), cell(kind), refusals, cell(open));
  return row;
}

function networkRow(item) {
  const row = document.createElement("tr");
  row.dataset.network = item.network;
  const refusals = cell(item.refusals.toLocaleString("en"));
  refusals.className = "number";
  const fill = button("Fill network", () => fillNetwork(item.network),
    `Fill network ${item.network}`);
  fill.dataset.control = "fill";
  row.append(cell(idOf(item.network)), refusals, cell(fill));
  return row;
}

// Which control of which row has the focus, to give it back after the rows are rebuilt:
// a refresh every 2 seconds must not take a keyboard user's place away.
function focusIn(table, key) {
  const active = document.activeElement;
  if (!(active instanceof HTMLElement) || !table.tBodies[0].contains(active)) {
    return null;
  }
  const row = active.closest("tr");
  return row === null ? null : { key: row.dataset[key], control: active.dataset.control };
}

function refocus(table, key, place) {
  if (place === null) {
    return;
  }
  for (const row of table.tBodies[0].rows) {
    if (row.dataset[key] === place.key) {
      for (const control of row.querySelectorAll("[data-control]")) {
        if (control.dataset.control === place.control) {
          control.focus();
          return;
        }
      }
    }
  }
}

function renderTop(data) {
  ui.topUpdated.textContent = `Updated ${new Date().toISOString().slice(11, 19)} UTC.`;
  const shown = JSON.stringify([ui.window.value, data.items, data.networks]);
  if (shown === topShown) {
    return;
  }
  topShown = shown;
  const during = WINDOWS.get(ui.window.value) ?? `the last ${data.window_seconds} seconds`;
  // A ticked subject that left the list is not blocked unseen.
  const present = new Set(data.items.filter(tickable).map((item) => item.subject));
  for (const subject of Array.from(ticked)) {
    if (!present.has(subject)) {
      ticked.delete(subject);
    }
  }
  const place = focusIn(ui.top, "subject");
  showEmpty(ui.top, ui.topEmpty, data.items.map(topRow),
    `No refusals in ${during}. A user or address shows here as soon as floodwall refuses ` +
      "its requests; try a longer window.");
  refocus(ui.top, "subject", place);
  const networkPlace = focusIn(ui.topNetworks, "network");
  showEmpty(ui.topNetworks, ui.topNetworksEmpty, data.networks.map(networkRow),
    `No anonymous client refused in ${during}.`);
  refocus(ui.topNetworks, "network", networkPlace);
  updateTicked();
}

async function refreshTop() {
  if (busy.has("top") || token === null || document.hidden) {
    return;
  }
  busy.add("top");
  const mine = session;
  try {
    const data = await call("GET", topPath());
    if (mine === session) {
      renderTop(data);
    }
  } catch (error) {
    if (mine !== session) {
      return;
    }
    if (error instanceof ApiError && error.status === 401) {
      failed(error);
    } else {
      const now = new Date().toISOString().slice(11, 19);
      ui.topUpdated.textContent = `Not refreshed at ${now} UTC: ${error.message}`;
    }
  } finally {
    busy.delete("top");
  }
}

async function blockSelected() {
  const userIds = Array.from(ticked);
  if (userIds.length === 0) {
    throw new InputError("Tick the users to block in Top offenders first.");
  }
  const body = { user_ids: userIds, reason: reasonFor(true), ttl_seconds: ttlSeconds() };
  const answer = await call("POST", "blocks", body);
  const until = answer.items.find((item) => item.blocked)?.blocked_until ?? null;
  const parts = [
    `Blocked ${plural(answer.blocked, "user", "users")} of ${userIds.length}` +
      untilText(until) +
      (answer.failed ? `; ${answer.failed} failed:` : "."),
  ];
  for (const item of answer.items) {
    if (item.blocked) {
      ticked.delete(item.user_id);
    } else {
      parts.push(" ", idOf(item.user_id), ` (${item.error ?? "not blocked"})`);
    }
  }
  confirmChange(answer.received_by, ...parts);
  topShown = null;
  await Promise.all([refreshTop(), refreshLists()]);
}

// -- a user ------------------------------------------------------------------------------

function field(list, name, ...value) {
  const term = document.createElement("dt");
  term.textContent = name;
  const description = document.createElement("dd");
  description.append(...value);
  list.append(term, description);
}

function renderStatus(status) {
  currentUser = status.user_id;
  const list = document.createDocumentFragment();
  field(list, "User", idOf(status.user_id));
  field(list, "Blocked", status.blocked ? "yes" : "no");
  if (status.blocked) {
    field(list, "Reason", maybe(status.reason));
    field(list, "Blocked by", maybe(status.blocked_by));
    field(list, "Since (UTC)", timeOf(status.blocked_at));
    const until = status.blocked_until ? timeOf(status.blocked_until) : "until unblocked";
    field(list, "Until (UTC)", until);
  }
  field(list, "Credentials not before (UTC)", timeOf(status.credentials_not_before));
  field(list, "Password reset required", status.password_reset_required ? "yes" : "no");
  const limit = status.limit;
  field(
    list,
    "Limit",
    `${limit.rate} requests/s, bursts of ${limit.burst}` +
      (limit.custom ? " (their own)" : " (the default)") +
      (limit.shadow ? "; observed, not enforced (shadow)" : ""),
  );
  if (status.concurrency !== null && status.concurrency !== undefined) {
    field(list, "Requests in flight", `at most ${status.concurrency} (their own)`);
  }
  for (const [route, window] of Object.entries(status.route_limits ?? {})) {
    field(list, "Route limit", textOf(route), ` ${window.limit} per ${window.period_seconds} s`);
  }
  ui.statusFields.replaceChildren(list);
  ui.status.hidden = false;
  ui.statusEmpty.hidden = true;
}

async function lookUp() {
  const userId = ui.userId.value;
  const status = await call("GET", userPath(userId));
  renderStatus(status);
}

async function openUser(userId) {
  ui.userId.value = userId;
  await act("lookup", lookUp);
  ui.userId.focus();
}

function actingOn() {
  if (currentUser === null) {
    ui.userId.focus();
    throw new InputError("Look up a user first.");
  }
  return currentUser;
}

async function changeUser(method, suffix, body, describe) {
  const userId = actingOn();
  const answer = await call(method, userPath(userId, suffix), body);
  renderStatus(answer);
  confirmChange(answer.received_by, ...describe(answer));
  await refreshLists();
}

function withReason() {
  const reason = reasonFor(false);
  return reason === null ? undefined : { reason };
}

// -- lists -------------------------------------------------------------------------------

function blockedRow(status) {
  const row = document.createElement("tr");
  row.dataset.userId = status.user_id;
  const open = button("Open", () => openUser(status.user_id), `Open ${shortened(status.user_id)}`);
  open.dataset.control = "open";
  row.append(
    cell(idOf(status.user_id)),
    cell(maybe(status.reason)),
    cell(maybe(status.blocked_by)),
    cell(timeOf(status.blocked_at)),
    cell(status.blocked_until ? timeOf(status.blocked_until) : "until unblocked"),
    cell(open),
  );
  return row;
}

function networkBlockRow(block) {
  const row = document.createElement("tr");
  row.dataset.network = block.network;
  const lift = button("Lift block", () => act("lift", () => liftNetwork(block.network)),
    `Lift block of ${block.network}`);
  lift.dataset.control = "lift";
  row.append(
    cell(idOf(block.network)),
    cell(maybe(block.reason)),
    cell(maybe(block.blocked_by)),
    cell(timeOf(block.blocked_at)),
    cell(block.blocked_until ? timeOf(block.blocked_until) : "until lifted"),
    cell(lift),
  );
  return row;
}

function auditRow(record) {
  const row = document.createElement("tr");
  row.dataset.id = record.id;
  row.append(
    cell(timeOf(record.time)),
    cell(textOf(record.actor)),
    cell(textOf(record.action)),
    cell(record.user_id === null ? "—" : idOf(record.user_id)),
    cell(maybe(record.reason)),
    cell(timeOf(record.expires)),
    cell(maybe(record.detail)),
  );
  return row;
}

function cursorQuery(cursor) {
  return cursor === null ? "" : `&cursor=${encodeId(cursor)}`;
}

async function loadBlocked(mine) {
  const cursor = blockedPages.at(-1);
  const page = await call("GET", `blocked?limit=${PAGE_SIZE}${cursorQuery(cursor)}`);
  if (mine !== session) {
    return;
  }
  const place = focusIn(ui.blocked, "userId");
  showEmpty(ui.blocked, ui.blockedEmpty, page.items.map(blockedRow),
    cursor === null
      ? "No one is blocked. Block a user from User, or tick rows in Top offenders."
      : "No more blocked users.");
  refocus(ui.blocked, "userId", place);
  blockedNext = page.next_cursor;
  ui.blockedNext.disabled = blockedNext === null;
  ui.blockedFirst.disabled = blockedPages.length === 1;
}

async function loadNetworks(mine) {
  const answer = await call("GET", "networks");
  if (mine !== session) {
    return;
  }
  const place = focusIn(ui.networks, "network");
  showEmpty(ui.networks, ui.networksEmpty, answer.items.map(networkBlockRow),
    "No network is blocked. Enter one (203.0.113.0/24) and a reason above to block it.");
  refocus(ui.networks, "network", place);
}

async function loadAudit(mine) {
  const cursor = auditPages.at(-1);
  const page = await call("GET", `audit?limit=${PAGE_SIZE}${cursorQuery(cursor)}`);
  if (mine !== session) {
    return;
  }
  showEmpty(ui.audit, ui.auditEmpty, page.items.map(auditRow),
    cursor === null
      ? "No operator action yet: every block, unblock, revoke and reset shows here, newest first."
      : "No older entries.");
  auditNext = page.next_cursor;
  ui.auditOlder.disabled = auditNext === null;
  ui.auditNewest.disabled = auditPages.length === 1;
}

async function refreshLists() {
  if (token === null) {
    return;
  }
  const mine = session;
  const results = await Promise.allSettled([
    loadBlocked(mine),
    loadNetworks(mine),
    loadAudit(mine),
  ]);
  const refused = results.find((result) => result.status === "rejected");
  if (refused !== undefined && mine === session) {
    failed(refused.reason);
  }
}

async function blockNetwork() {
  const cidr = ui.cidr.value.trim();
  if (cidr === "") {
    ui.cidr.focus();
    throw new InputError("Network: enter a CIDR to block (203.0.113.0/24).");
  }
  const body = { reason: reasonFor(true), ttl_seconds: ttlSeconds(), force: ui.force.checked };
  const answer = await call("PUT", networkPath(cidr), body);
  confirmChange(answer.received_by, "Blocked the network ", idOf(answer.network),
    `${untilText(answer.blocked_until)}.`);
  ui.cidr.value = "";
  ui.force.checked = false;
  await refreshLists();
}

async function liftNetwork(network) {
  const answer = await call("DELETE", networkPath(network));
  confirmChange(answer.received_by, "Lifted the block of ", idOf(answer.network), ".");
  await refreshLists();
}

// -- signing in and out ------------------------------------------------------------------

function stopRefreshing() {
  for (const timer of timers) {
    clearInterval(timer);
  }
  timers = [];
}

function clearData() {
  for (const table of [ui.top, ui.topNetworks, ui.blocked, ui.networks, ui.audit]) {
    table.tBodies[0].replaceChildren();
  }
  const empties = [
    ui.topEmpty,
    ui.topNetworksEmpty,
    ui.blockedEmpty,
    ui.networksEmpty,
    ui.auditEmpty,
  ];
  for (const empty of empties) {
    empty.hidden = true;
    empty.textContent = "";
  }
  ui.statusFields.replaceChildren();
  ui.status.hidden = true;
  ui.statusEmpty.hidden = false;
  ui.notice.replaceChildren();
  ui.notice.className = "notice";
  ui.topUpdated.textContent = "";
  for (const input of [ui.userId, ui.reason, ui.ttl, ui.cidr]) {
    input.value = "";
  }
  ticked.clear();
  updateTicked();
  topShown = null;
  currentUser = null;
  blockedPages = [null];
  auditPages = [null];
}

function signOut(message = "") {
  session += 1;
  token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  stopRefreshing();
  clearData();
  ui.console.hidden = true;
  ui.session.hidden = true;
  ui.signInSection.hidden = false;
  ui.signInError.textContent = message;
  ui.token.focus();
}

async function signIn(candidate) {
  session += 1;
  const mine = session;
  token = candidate;
  ui.signInError.textContent = "";
  let first;
  try {
    first = await call("GET", topPath());
  } catch (error) {
    if (mine !== session) {
      return;
    }
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    ui.signInError.textContent =
      error.status === 401
        ? "That admin token was refused. Check it and try again."
        : error.message;
    ui.token.focus();
    return;
  }
  if (mine !== session) {
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, candidate);
  ui.signInSection.hidden = true;
  ui.console.hidden = false;
  ui.session.hidden = false;
  renderTop(first);
  await refreshLists();
  stopRefreshing();
  timers = [setInterval(refreshTop, TOP_EVERY_MS), setInterval(refreshLists, LISTS_EVERY_MS)];
}

// -- wiring ------------------------------------------------------------------------------

function on(element, event, name, action) {
  element.addEventListener(event, (domEvent) => {
    domEvent.preventDefault();
    act(name, action);
  });
}

ui.signIn.addEventListener("submit", (event) => {
  event.preventDefault();
  const candidate = ui.token.value;
  ui.token.value = "";
  if (candidate.trim() === "") {
    ui.signInError.textContent = "Enter the admin token.";
    ui.token.focus();
    return;
  }
  signIn(candidate);
});
ui.signOut.addEventListener("click", () => signOut("Signed out."));
ui.window.addEventListener("change", () => {
  topShown = null;
  refreshTop();
});
ui.selectAll.addEventListener("change", () => {
  for (const row of ui.top.tBodies[0].rows) {
    const box = row.querySelector("input[type=checkbox]");
    if (box !== null && !box.disabled) {
      box.checked = ui.selectAll.checked;
      if (box.checked) {
        ticked.add(row.dataset.subject);
      } else {
        ticked.delete(row.dataset.subject);
      }
    }
  }
  updateTicked();
});
on(ui.blockSelected, "click", "bulk", blockSelected);
on(ui.lookup, "submit", "lookup", lookUp);
on(ui.block, "click", "user", () => {
  const body = { reason: reasonFor(true), ttl_seconds: ttlSeconds() };
  return changeUser("PUT", "/block", body, (status) => [
    "Blocked ", idOf(status.user_id), `${untilText(status.blocked_until)}.`,
  ]);
});
on(ui.unblock, "click", "user", () =>
  changeUser("DELETE", "/block", undefined, (status) => ["Unblocked ", idOf(status.user_id), "."]),
);
on(ui.revoke, "click", "user", () =>
  changeUser("POST", "/revoke", withReason(), (status) => [
    "Revoked every credential of ", idOf(status.user_id),
    ` issued before ${timeOf(status.credentials_not_before)} UTC.`,
  ]),
);
on(ui.passwordReset, "click", "user", () =>
  changeUser("POST", "/password-reset", withReason(), (status) => [
    idOf(status.user_id), " must reset their password; their credentials are revoked.",
  ]),
);
on(ui.networkForm, "submit", "network", blockNetwork);
on(ui.blockedNext, "click", "blocked", async () => {
  blockedPages.push(blockedNext);
  await loadBlocked(session);
});
on(ui.blockedFirst, "click", "blocked", async () => {
  blockedPages = [null];
  await loadBlocked(session);
});
on(ui.auditOlder, "click", "audit", async () => {
  auditPages.push(auditNext);
  await loadAudit(session);
});
on(ui.auditNewest, "click", "audit", async () => {
  auditPages = [null];
  await loadAudit(session);
});

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved !== null) {
  signIn(saved);
} else {
  ui.token.focus();
}
