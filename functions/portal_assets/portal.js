// The portal: the "Bookings Not Invoiced" page over the app's own API. Plain script, no build step.
// Every value from the API is written with textContent, never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 1000;
  const PAGE_SIZE = 50;
  const READ_ROLE = "Bookings.Read";
  const INVOICE_ROLE = "Bookings.Invoice";

  // errorCode -> what a person can do about it.
  const REASONS = {
    NO_CUSTOMER: "The appointment has no customer. Add the customer to the appointment in Bookings, then retry.",
    NO_CUSTOMER_EMAIL: "The customer has no email address, so Business Central cannot match or create them. Add an email address to the customer in Bookings, then retry.",
    CUSTOMER_NOT_FOUND: "No Business Central customer has this email address, and creating customers is turned off. Create the customer in Business Central with the same email address, then retry.",
    SERVICE_NOT_MAPPED: "No Business Central item matches this service, and creating items is turned off. Create a Service item with the same name in Business Central, then retry.",
    BC_REJECTED: "Business Central refused the invoice. Fix what it names, then retry.",
    BC_UNAVAILABLE: "Business Central could not be reached, even after several tries. Retry in a few minutes.",
    CUSTOMER_BLOCKED: "The customer is blocked for invoicing in Business Central. Unblock the customer there, then retry.",
    ITEM_BLOCKED: "The service's item is blocked in Business Central. Unblock the item there, then retry.",
  };

  const state = {
    canInvoice: false,
    settings: null,
    query: {},
    tokens: [null], // continuation token of each page seen; the last one is the next page's
    page: 0,
    rows: [],
    selected: new Set(),
    requestId: null,
    failedKeys: [],
  };

  function reasonFor(code, error) {
    const sentence = REASONS[code] || `Invoicing failed (${code || "unknown reason"}).`;
    return error ? `${sentence} Details: ${error}` : sentence;
  }

  function say(text) {
    $("message").textContent = text;
  }

  function alarm(text) {
    const alert = $("alert");
    alert.textContent = text || "";
    alert.hidden = !text;
  }

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  async function api(path, options = {}) {
    const init = { credentials: "same-origin", headers: { Accept: "application/json" }, ...options };
    if (options.body !== undefined) {
      init.headers = { ...init.headers, "Content-Type": "application/json" };
      init.body = JSON.stringify(options.body);
    }
    const response = await fetch(path, init);
    const text = await response.text();
    // The platform itself may answer (a 401 from App Service Authentication): JSON only if it says so.
    const json = (response.headers.get("Content-Type") || "").includes("json");
    const document = text && json ? JSON.parse(text) : null;
    if (!response.ok) {
      const detail = (document && (document.detail || document.title)) || response.statusText;
      throw new ApiError(response.status, detail);
    }
    return document;
  }

  function explain(error) {
    if (error.status === 401) return "Your sign-in has ended. Sign in again.";
    if (error.status === 403) return `Your account may not do this (${error.message}). Ask an administrator for the right app role.`;
    return error.message || "Something went wrong.";
  }

  // -- who is signed in -------------------------------------------------------------------------

  // The app says who is signed in (`GET /api/me`, any caller, no role): Azure serves `/.auth/me`
  // only with the token store on, which the deployment leaves off. null when nobody is signed in;
  // an ApiError when the app cannot tell (a 503 names why), never a reason to sign in again.
  async function whoAmI() {
    try {
      return await api("/api/me");
    } catch (error) {
      if (error.status === 401) return null;
      throw error;
    }
  }

  function showWithoutAccess(me) {
    const notice = $("no-access");
    $("no-access-text").textContent =
      `Signed in as ${me.name}, without access; ask an administrator for the ${READ_ROLE} role.`;
    notice.hidden = false;
    $("views").hidden = true;
  }

  function showSignedOut() {
    $("signed-out").hidden = false;
    $("sign-in").hidden = false;
    $("sign-out").hidden = true;
    $("bookings-view").hidden = true;
    $("settings-view").hidden = true;
    $("views").hidden = true;
  }

  // -- settings ---------------------------------------------------------------------------------

  const SETTING_LABELS = [
    ["businesses", "Bookings businesses"],
    ["timeZone", "Time zone"],
    ["syncSchedule", "Sync schedule (NCRONTAB, UTC)"],
    ["syncLookbackDays", "Sync looks back (days)"],
    ["reconcileSchedule", "Reconcile schedule (NCRONTAB, UTC)"],
    ["invoiceDate", "Invoice date"],
    ["syncCustomers", "Create missing customers"],
    ["customerTemplate", "Customer template"],
    ["syncServices", "Create missing service items"],
    ["itemTemplate", "Item template"],
    ["maxSelection", "Most bookings per request"],
    ["priceSource", "Prices from"],
    ["retentionDays", "Retention (days)"],
  ];

  const PRICE_SOURCES = {
    bookings: "Bookings (the appointment's price, by price type)",
    businessCentral: "Business Central (its prices, price lists and discounts; no unit price sent)",
  };

  function describe(value) {
    if (value === null || value === undefined || value === "") return "not set";
    if (value === true) return "yes";
    if (value === false) return "no";
    if (Array.isArray(value)) return value.join(", ");
    return String(value);
  }

  function renderSettings(settings) {
    const list = $("settings-list");
    list.replaceChildren();
    const add = (label, value) => {
      const dt = document.createElement("dt");
      dt.textContent = label;
      const dd = document.createElement("dd");
      dd.textContent = value;
      list.append(dt, dd);
    };
    for (const [name, label] of SETTING_LABELS) {
      if (name === "businesses") add(label, settings.businesses.map((b) => `${businessName(b)}${businessName(b) === b ? "" : ` (${b})`}`).join(", "));
      else if (name === "priceSource") add(label, PRICE_SOURCES[settings.priceSource] || describe(settings.priceSource));
      else if (name in settings) add(label, describe(settings[name]));
    }
    const bc = settings.businessCentral || {};
    add("Business Central environment", describe(bc.environment));
    const company = bc.companyDisplayName || bc.companyName;
    add("Business Central company", company ? `${company} (${bc.companyId})` : describe(bc.companyId));
    add("Currency", bc.currencyCode || "not known (Business Central did not say)");
    const health = settings.health || { checks: {} };
    add("Health", health.status === "ok" ? "healthy" : "unhealthy");
    for (const [name, check] of Object.entries(health.checks)) {
      add(`Health: ${name}`, `${check.ok ? "ok" : "failing"}${check.detail ? ` (${check.detail})` : ""}`);
    }
    add("Your roles", describe((settings.caller || {}).roles));
  }

  // -- setup check (GET /api/setup-check) -----------------------------------------------------------

  const CHECK_ORDER = { failed: 0, warning: 1, skipped: 2, ok: 3 };

  function renderSetupCheck(report) {
    const list = $("setup-checks");
    list.replaceChildren();
    const checks = [...report.checks].sort((a, b) => (CHECK_ORDER[a.status] ?? 9) - (CHECK_ORDER[b.status] ?? 9));
    for (const check of checks) {
      const item = document.createElement("li");
      item.className = `check-${check.status}`;
      item.dataset.check = check.name;
      const status = document.createElement("span");
      status.className = "check-status";
      status.textContent = check.status;
      const name = document.createElement("strong");
      name.textContent = check.name;
      const detail = document.createElement("span");
      detail.className = "sub";
      detail.textContent = check.detail;
      item.append(status, name, detail);
      if (check.fix && check.status !== "ok") {
        const fix = document.createElement("span");
        fix.className = "check-fix";
        fix.textContent = `Fix: ${check.fix}`;
        item.append(fix);
      }
      list.append(item);
    }
    $("setup-checked-at").textContent = `Checked at ${new Date(report.checkedAt).toLocaleString()}.`;
    const failed = checks.filter((check) => check.status === "failed").length;
    const warning = $("setup-warning");
    warning.hidden = failed === 0;
    warning.textContent = `Setup check: ${failed} failed`;
  }

  async function loadSetupCheck() {
    const button = $("check-again");
    button.disabled = true;
    $("setup-checked-at").textContent = "Checking...";
    try {
      renderSetupCheck(await api("/api/setup-check"));
    } catch (error) {
      $("setup-checked-at").textContent = `The setup check could not run: ${explain(error)}`;
    } finally {
      button.disabled = false;
    }
  }

  // A business by the name people know (Graph's displayName, from GET /api/settings); its mailbox
  // address is the tooltip. The address stands in while the name is not known.
  function businessName(id) {
    const names = (state.settings && state.settings.businessNames) || {};
    return names[id] || id;
  }

  function fillBusinesses(businesses) {
    const select = $("f-business");
    for (const business of businesses) {
      const option = document.createElement("option");
      option.value = business;
      option.textContent = businessName(business);
      option.title = business;
      select.append(option);
    }
  }

  // -- money ------------------------------------------------------------------------------------

  function currencyCode() {
    return ((state.settings && state.settings.businessCentral) || {}).currencyCode || null;
  }

  // An amount in the company's currency (Business Central's local currency); without one, a number.
  function money(amount, code = currencyCode()) {
    const value = Number(amount || 0);
    if (code) {
      try {
        return new Intl.NumberFormat(undefined, { style: "currency", currency: code }).format(value);
      } catch (error) {
        return `${code} ${value.toFixed(2)}`;
      }
    }
    return value.toFixed(2);
  }

  // -- the list ---------------------------------------------------------------------------------

  function nextDay(date) {
    const day = new Date(`${date}T00:00:00Z`);
    day.setUTCDate(day.getUTCDate() + 1);
    return day.toISOString().slice(0, 10);
  }

  // The states and what "Invoice all" selects come from GET /api/settings (the app's lifecycle).
  function selectAll() {
    return state.settings.selectAll;
  }

  function fillStates(states, selected) {
    $("f-status").replaceChildren(
      ...states.map((name) => {
        const option = document.createElement("option");
        option.value = name;
        option.textContent = name;
        option.selected = name === selected;
        return option;
      }),
    );
  }

  function readFilters() {
    const query = { status: $("f-status").value };
    const business = $("f-business").value;
    const customer = $("f-customer").value.trim();
    if (business) query.businessId = business;
    if (customer.includes("@")) query.customerEmail = customer;
    else if (customer) query.customerName = customer;
    if ($("f-from").value) query.from = $("f-from").value;
    if ($("f-to").value) query.to = nextDay($("f-to").value); // the API's `to` is exclusive
    return query;
  }

  function queryString(query, extra = {}) {
    const params = new URLSearchParams({ ...query, ...extra });
    return params.toString();
  }

  function formatStart(booking) {
    const zone = (state.settings && state.settings.timeZone) || "UTC";
    const start = new Date(booking.start);
    return new Intl.DateTimeFormat(undefined, {
      timeZone: zone, year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
    }).format(start);
  }

  const PRICED_IN_BC = ["callUs", "priceVaries", "notSet"];

  function amountCell(booking) {
    const td = cell(undefined, "num amount");
    if (booking.priceType === "free") {
      td.append(document.createTextNode("free"));
      return td;
    }
    const byBusinessCentral = state.settings.priceSource === "businessCentral" || PRICED_IN_BC.includes(booking.priceType);
    td.append(document.createTextNode(money(booking.amount)));
    if (booking.priceType === "hourly") line(td, `${money(booking.price)} / hour`);
    if (byBusinessCentral) line(td, "priced by Business Central");
    return td;
  }

  function cell(text, className) {
    const td = document.createElement("td");
    if (className) td.className = className;
    if (text !== undefined) td.textContent = text;
    return td;
  }

  function line(parent, text, className) {
    const span = document.createElement("span");
    span.className = className || "sub";
    span.textContent = text;
    parent.append(span);
    return span;
  }

  // The invoice number opens the invoice in Business Central's web client (the API builds the link).
  function invoiceLine(booking) {
    const span = document.createElement("span");
    span.className = "sub";
    span.append("Invoice ");
    if (booking.invoiceUrl) {
      const link = document.createElement("a");
      link.href = booking.invoiceUrl;
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      link.className = "invoice-link";
      link.textContent = booking.invoiceNumber;
      link.setAttribute("aria-label", `Invoice ${booking.invoiceNumber} in Business Central (opens a new tab)`);
      span.append(link);
    } else {
      span.append(booking.invoiceNumber);
    }
    if (booking.invoiceStatus) span.append(` (${booking.invoiceStatus})`);
    return span;
  }

  function statusCell(booking) {
    const td = cell(undefined, `status-${booking.status}`);
    td.append(document.createTextNode(booking.status));
    if (booking.invoiceNumber) td.append(invoiceLine(booking));
    else if (booking.invoiceStatus) line(td, booking.invoiceStatus);
    if (booking.invoiceSource === "manual") line(td, "marked as invoiced by hand");
    if (booking.status === "Failed") line(td, reasonFor(booking.errorCode, booking.error), "sub reason");
    if (booking.note) line(td, booking.note);
    return td;
  }

  function selectCell(booking) {
    const td = cell(undefined, "select-col");
    const box = document.createElement("input");
    box.type = "checkbox";
    box.className = "row-select";
    box.dataset.key = booking.key;
    box.checked = state.selected.has(booking.key);
    box.setAttribute("aria-label", `Select ${booking.customerName || "booking"}, ${formatStart(booking)}`);
    box.addEventListener("change", () => {
      if (box.checked) state.selected.add(booking.key);
      else state.selected.delete(booking.key);
      updateSelection();
    });
    td.append(box);
    return td;
  }

  function customerCell(booking) {
    const td = cell(undefined, "customer-col");
    if (booking.status === selectAll().status && booking.customerEmail) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "invoice-customer";
      button.textContent = "Invoice customer";
      button.setAttribute("aria-label", `Invoice customer ${booking.customerName || booking.customerEmail}: all their unbilled bookings`);
      button.addEventListener("click", () => invoiceCustomer(booking));
      td.append(button);
    }
    return td;
  }

  function row(booking) {
    const tr = document.createElement("tr");
    tr.dataset.key = booking.key;
    tr.id = `booking-${booking.key}`;
    tr.tabIndex = -1;
    if (state.canInvoice) tr.append(selectCell(booking));
    const when = cell(formatStart(booking));
    const customer = cell(booking.customerName || "(no customer)");
    if (booking.customerEmail) line(customer, booking.customerEmail);
    if (booking.groupAppointment) {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = "Group";
      badge.title = "An attendee of a group appointment: each attendee is billed separately";
      customer.append(badge);
    }
    const service = cell(booking.serviceName);
    if (state.settings && state.settings.businesses.length > 1) {
      line(service, businessName(booking.businessId), "sub business").title = booking.businessId;
    }
    tr.append(when, customer, service, amountCell(booking), statusCell(booking));
    if (state.canInvoice) tr.append(customerCell(booking));
    return tr;
  }

  function renderRows() {
    const rows = $("rows");
    rows.replaceChildren(...state.rows.map(row));
    $("empty").hidden = state.rows.length > 0;
    $("newer").disabled = state.page === 0;
    $("older").disabled = !state.tokens[state.page + 1];
    $("page-label").textContent = state.rows.length ? `Page ${state.page + 1}` : "";
    updateSelection();
  }

  async function loadPage(page) {
    const token = state.tokens[page];
    const extra = { top: String(PAGE_SIZE) };
    if (token) extra.continuationToken = token;
    say("Loading bookings…");
    try {
      const result = await api(`/api/bookings?${queryString(state.query, extra)}`);
      state.page = page;
      state.rows = result.value;
      state.tokens[page + 1] = result.continuationToken;
      state.tokens.length = page + 2;
      renderRows();
      say(`${state.rows.length} booking${state.rows.length === 1 ? "" : "s"} shown (${state.query.status}).`);
    } catch (error) {
      say("");
      alarm(explain(error));
    }
  }

  // Count and amount of everything the filter matches (all pages): a request of its own, so the
  // first page never waits for it. A newer filter's answer wins over a slower older one.
  let totalsTicket = 0;

  async function loadTotals() {
    const ticket = ++totalsTicket;
    const query = state.query;
    $("totals").textContent = "Adding up…";
    try {
      const totals = await api(`/api/booking-totals?${queryString(query)}`);
      if (ticket !== totalsTicket) return;
      const plural = totals.count === 1 ? "" : "s";
      $("totals").textContent =
        `${totals.count.toLocaleString()} ${query.status} booking${plural} match, ${money(totals.amount, totals.currencyCode)} in total.`;
    } catch (error) {
      if (ticket === totalsTicket) $("totals").textContent = "";
      alarm(explain(error));
    }
  }

  // The CSV of everything the filter matches, straight from the API (the session cookie goes along).
  function updateExport() {
    $("export").href = `/api/booking-export?${queryString(state.query)}`;
  }

  async function filtersChanged() {
    state.tokens = [null];
    state.selected.clear();
    updateExport();
    await loadPage(0);
    loadTotals(); // after the page, as at start
  }

  function applyFilters() {
    alarm("");
    state.query = readFilters();
    filtersChanged();
  }

  // -- selection and actions ----------------------------------------------------------------------

  function updateSelection() {
    const count = state.selected.size;
    $("selection-summary").textContent = count ? `${count} booking${count === 1 ? "" : "s"} selected.` : "No bookings selected.";
    for (const id of ["invoice-selected", "exclude-selected", "include-selected", "mark-invoiced"]) {
      $(id).disabled = count === 0;
    }
    const boxes = [...document.querySelectorAll(".row-select")];
    const all = $("select-page");
    all.checked = boxes.length > 0 && boxes.every((b) => b.checked);
    all.indeterminate = !all.checked && boxes.some((b) => b.checked);
    const rule = selectAll();
    const allowed = state.query.status === rule.status && !state.query.customerName;
    $("invoice-all").disabled = !allowed;
    $("invoice-all").title = allowed ? "" : `Only for ${rule.status} bookings, filtered by email rather than name`;
  }

  function selectPage(checked) {
    for (const box of document.querySelectorAll(".row-select")) {
      box.checked = checked;
      if (checked) state.selected.add(box.dataset.key);
      else state.selected.delete(box.dataset.key);
    }
    updateSelection();
  }

  function confirmDialog(text) {
    const dialog = $("confirm");
    $("confirm-text").textContent = text;
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.returnValue = "cancel";
      dialog.showModal();
      $("confirm-cancel").focus();
    });
  }

  function allFilter(query) {
    const filter = {};
    for (const name of selectAll().filters) {
      if (query[name]) filter[name] = query[name];
    }
    return filter;
  }

  async function countMatching(filter) {
    const result = await api(`/api/booking-count?${queryString({ status: selectAll().status, ...filter })}`);
    return result;
  }

  async function submit(body, what) {
    alarm("");
    try {
      const result = await api("/api/invoice-requests", { method: "POST", body });
      const skipped = result.skipped.length + result.notFound.length;
      say(`${result.accepted} booking${result.accepted === 1 ? "" : "s"} queued for invoicing (${what})${skipped ? `; ${skipped} skipped` : ""}.`);
      state.selected.clear();
      followRequest(result.requestId);
    } catch (error) {
      alarm(explain(error));
    }
  }

  async function invoiceSelected() {
    const keys = [...state.selected];
    const ok = await confirmDialog(`Create one draft invoice for each of the ${keys.length} selected booking${keys.length === 1 ? "" : "s"}?`);
    if (ok) await submit({ bookingKeys: keys }, "selected");
  }

  async function invoiceAllMatching(filter, description) {
    try {
      const counted = await countMatching(filter);
      if (counted.count === 0) {
        say(`No unbilled bookings ${description}.`);
        return;
      }
      const extra = counted.exceedsLimit ? ` More match than one request may hold (${counted.limit}); narrow the filter, or invoice these and repeat.` : "";
      const ok = await confirmDialog(`Create one draft invoice for each of the ${counted.count} unbilled booking${counted.count === 1 ? "" : "s"} ${description}?${extra}`);
      if (ok) await submit({ all: true, filter }, description);
    } catch (error) {
      alarm(explain(error));
    }
  }

  function invoiceCustomer(booking) {
    const filter = { customerEmail: booking.customerEmail, businessId: booking.businessId };
    invoiceAllMatching(filter, `of ${booking.customerName || booking.customerEmail}`);
  }

  async function updateBookings(action, label) {
    const keys = [...state.selected];
    const body = { action, bookingKeys: keys };
    const reference = $("reference").value.trim();
    if (action === "markInvoiced" && reference) body.reference = reference;
    const ok = await confirmDialog(`${label} ${keys.length} selected booking${keys.length === 1 ? "" : "s"}?`);
    if (!ok) return;
    alarm("");
    try {
      const result = await api("/api/booking-updates", { method: "POST", body });
      const skipped = result.skipped.map((s) => `${s.key.slice(0, 6)}… is ${s.status}`);
      say(`${label}: ${result.updated.length} updated${skipped.length ? `; skipped: ${skipped.join(", ")}` : ""}.`);
      state.selected.clear();
      await loadPage(state.page);
      loadTotals();
    } catch (error) {
      alarm(explain(error));
    }
  }

  // -- progress ---------------------------------------------------------------------------------

  function renderProgress(status) {
    const counts = status.counts || {};
    const done = status.total - state.settings.inFlightStates.reduce((n, s) => n + (counts[s] || 0), 0);
    $("progress").hidden = false;
    $("progress-bar").max = Math.max(status.total, 1);
    $("progress-bar").value = done;
    const finished = done >= status.total;
    $("progress-text").textContent = finished
      ? `Finished: ${counts.Invoiced || 0} of ${status.total} invoiced, ${counts.Failed || 0} failed.`
      : `Invoicing: ${done} of ${status.total} done.`;
    $("progress-counts").replaceChildren(
      ...state.settings.states.filter((s) => counts[s]).map((s) => {
        const li = document.createElement("li");
        li.dataset.state = s;
        li.textContent = `${s}: ${counts[s]}`;
        return li;
      }),
    );
    const failed = (status.items || []).filter((item) => item.status === "Failed");
    state.failedKeys = failed.map((item) => item.key);
    $("failures").hidden = failed.length === 0;
    $("failure-list").replaceChildren(...failed.map(failureItem));
    return finished;
  }

  // Whose booking failed: customer, appointment time and service, linking to its row.
  function failureItem(item) {
    const li = document.createElement("li");
    li.dataset.key = item.key;
    const link = document.createElement("a");
    link.href = `#booking-${item.key}`;
    link.className = "failure-link";
    const who = item.customerName || item.customerEmail || "(no customer)";
    link.textContent = [who, item.start ? formatStart(item) : null, item.serviceName].filter(Boolean).join(", ");
    link.addEventListener("click", (event) => {
      event.preventDefault();
      showBooking(item);
    });
    const reason = document.createElement("span");
    reason.className = "reason";
    reason.textContent = reasonFor(item.errorCode, item.error);
    li.append(link, ": ", reason);
    return li;
  }

  // Bring a booking's row into view: on this page if it is there, else the list of its state
  // filtered to its customer.
  async function showBooking(item) {
    let row = document.getElementById(`booking-${item.key}`);
    if (!row) {
      $("f-status").value = item.status;
      $("f-business").value = item.businessId || "";
      $("f-customer").value = item.customerEmail || item.customerName || "";
      $("f-from").value = "";
      $("f-to").value = "";
      alarm("");
      state.query = readFilters();
      await filtersChanged();
      row = document.getElementById(`booking-${item.key}`);
    }
    if (!row) return;
    for (const marked of document.querySelectorAll("tr.target")) marked.classList.remove("target");
    row.classList.add("target");
    row.scrollIntoView({ block: "center" });
    row.focus();
  }

  function followRequest(requestId) {
    state.requestId = requestId;
    const poll = async () => {
      if (state.requestId !== requestId) return;
      try {
        const status = await api(`/api/invoice-requests/${encodeURIComponent(requestId)}`);
        if (renderProgress(status)) {
          await loadPage(state.page);
          loadTotals();
          return;
        }
      } catch (error) {
        alarm(explain(error));
      }
      setTimeout(poll, POLL_MS);
    };
    poll();
  }

  async function retryFailed() {
    if (!state.failedKeys.length) return;
    await submit({ bookingKeys: state.failedKeys }, "retry of the failed ones");
  }

  // -- views --------------------------------------------------------------------------------------

  function showView(name) {
    const settings = name === "settings";
    $("bookings-view").hidden = settings;
    $("settings-view").hidden = !settings;
    $("show-bookings").setAttribute("aria-current", settings ? "false" : "page");
    $("show-settings").setAttribute("aria-current", settings ? "page" : "false");
  }

  function wire() {
    $("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      applyFilters();
    });
    $("filters").addEventListener("reset", () => setTimeout(applyFilters, 0));
    $("newer").addEventListener("click", () => loadPage(state.page - 1));
    $("older").addEventListener("click", () => loadPage(state.page + 1));
    $("select-page").addEventListener("change", (event) => selectPage(event.target.checked));
    $("invoice-selected").addEventListener("click", invoiceSelected);
    $("invoice-all").addEventListener("click", () => invoiceAllMatching(allFilter(state.query), "matching the filter"));
    $("exclude-selected").addEventListener("click", () => updateBookings("exclude", "Exclude"));
    $("include-selected").addEventListener("click", () => updateBookings("include", "Include"));
    $("mark-invoiced").addEventListener("click", () => updateBookings("markInvoiced", "Mark as invoiced"));
    $("retry-failed").addEventListener("click", retryFailed);
    $("show-bookings").addEventListener("click", () => showView("bookings"));
    $("show-settings").addEventListener("click", () => showView("settings"));
    $("check-again").addEventListener("click", loadSetupCheck);
    $("setup-warning").addEventListener("click", () => showView("settings"));
  }

  async function start() {
    wire();
    let me;
    try {
      me = await whoAmI();
    } catch (error) {
      alarm(explain(error));
      return;
    }
    if (!me) {
      showSignedOut();
      return;
    }
    $("user").textContent = `Signed in as ${me.name}`;
    $("sign-out").hidden = false;
    if (!me.roles.includes(READ_ROLE)) {
      showWithoutAccess(me);
      return;
    }
    try {
      state.settings = await api("/api/settings");
    } catch (error) {
      alarm(explain(error));
      return;
    }
    fillStates(state.settings.states, selectAll().status);
    state.query = readFilters();
    const list = api(`/api/bookings?${queryString(state.query, { top: String(PAGE_SIZE) })}`);
    updateExport();
    state.canInvoice = me.roles.includes(INVOICE_ROLE);
    fillBusinesses(state.settings.businesses);
    renderSettings(state.settings);
    loadSetupCheck(); // in the background: the list does not wait for the live checks
    $("views").hidden = false;
    $("actions").hidden = !state.canInvoice;
    for (const th of document.querySelectorAll(".select-col, .customer-col")) th.hidden = !state.canInvoice;
    showView("bookings");
    try {
      const first = await list;
      state.rows = first.value;
      state.tokens = [null, first.continuationToken];
      renderRows();
      say(`${state.rows.length} booking${state.rows.length === 1 ? "" : "s"} shown (${state.query.status}).`);
    } catch (error) {
      alarm(explain(error));
    }
    // After the first rows: a total reads every match (100,000 bookings: ~100 storage round
    // trips), which would otherwise queue the first page behind it in storage and in the app.
    loadTotals();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
