#!/usr/bin/env node
// Warden's approvals page in headless Chromium (Debian's, driven by
// Playwright): an approver logs in with their token, finds the held call on
// the pending list, opens it, takes a screenshot, and approves it with a
// reason; the page must say it is approved, the history must list it, the
// session cookie must be HttpOnly and SameSite=Strict, and no Content
// Security Policy violation may be reported.
//
// Usage: node approvals-page.mjs ADMIN_URL TOKEN TOOL SCREENSHOT_PNG REASON
//
// Prints `ok <check>` / `FAIL <check>: <detail>` lines and `N passed, M failed`.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [admin, token, tool, screenshot, reason] = process.argv.slice(2);
if (!admin || !token || !tool || !screenshot || !reason) {
  console.error("usage: node approvals-page.mjs ADMIN_URL TOKEN TOOL SCREENSHOT_PNG REASON");
  process.exit(2);
}
let passed = 0;
let failed = 0;
const check = (name, ok, detail = "") => {
  if (ok) {
    passed++;
    console.log(`ok ${name}`);
  } else {
    failed++;
    console.log(`FAIL ${name}: ${detail}`);
  }
};

// The machine has no network: without these flags Chromium spends its time
// on refused connections (updates, sync, QUIC probes) and may hang.
const profile = mkdtempSync(join(tmpdir(), "warden-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  viewport: { width: 1200, height: 900 },
  timeout: 60_000,
});
const violations = [];
try {
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(20_000);
  page.on("console", (message) => {
    if (/Content.Security.Policy/i.test(message.text())) violations.push(message.text());
  });

  await page.goto(`${admin}/ui/`);
  check("unauthenticated-goes-to-login", page.url() === `${admin}/ui/login`, page.url());

  await page.fill("#token", "wdn_not-an-approver");
  await page.click("button[type=submit]");
  await page.locator(".notice.error").waitFor();
  check("wrong-token-refused", (await page.textContent(".notice.error")).includes("not an approver's token"));

  await page.fill("#token", token);
  await Promise.all([page.waitForURL(`${admin}/ui/`), page.click("button[type=submit]")]);
  check("logged-in", (await page.textContent("header")).includes("Log out"));
  const cookies = await context.cookies(`${admin}/ui/`);
  const session = cookies.find((c) => c.name === "warden_ui");
  check(
    "cookie-flags",
    session && session.httpOnly && session.sameSite === "Strict" && session.path === "/ui",
    JSON.stringify(cookies),
  );

  // The held call shows up on the pending list (reload until it does).
  let link;
  for (let attempt = 0; attempt < 60; attempt++) {
    link = page.locator("table.list a", { hasText: tool }).first();
    if ((await link.count()) > 0) break;
    await page.waitForTimeout(500);
    await page.reload();
  }
  check("held-call-listed", (await link.count()) > 0, await page.textContent("main"));

  await Promise.all([page.waitForURL(/\/ui\/approvals\/[^/?]+$/), link.click()]);
  const heading = await page.textContent("h1");
  check("details-page", heading.includes(tool) && heading.includes("pending"), heading);
  check("arguments-shown", (await page.textContent("pre.arguments")).trim().startsWith("{"));
  await page.screenshot({ path: screenshot, fullPage: true });
  check("screenshot", true);

  await page.fill("#approve-reason", reason);
  await Promise.all([
    page.waitForURL(/\/ui\/approvals\/[^/?]+\?decided$/),
    page.click("form.approve button[type=submit]"),
  ]);
  const notice = await page.textContent(".notice");
  check("approved", notice.includes("Approved"), notice);
  check("reason-recorded", (await page.textContent("main")).includes(reason));

  await page.click("nav a[href='/ui/history']");
  await page.waitForURL(`${admin}/ui/history`);
  const history = await page.textContent("main");
  check("history-lists-it", history.includes(tool) && history.includes("approved"), history);

  const stylesheet = await page.evaluate(() => getComputedStyle(document.body).margin);
  check("stylesheet-applied", stylesheet === "0px", stylesheet);
  check("no-csp-violations", violations.length === 0, violations.join(" | "));
} catch (err) {
  check("flow", false, err?.stack ?? String(err));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
