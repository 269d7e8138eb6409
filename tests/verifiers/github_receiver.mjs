#!/usr/bin/env node
// A GitHub webhook receiver written the way @octokit/webhooks documents it:
// `createNodeMiddleware(webhooks, { path: "/hook" })` behind a plain Node
// HTTP server. The e2e tests drain `signature = "github"` deliveries to it.
//
// Usage: WEBHOOK_SECRET=... [PORT=0] node github_receiver.mjs
//        node github_receiver.mjs --self-check
//
// Prints `listening on http://127.0.0.1:PORT/hook` on stderr once ready, then
// one stdout line per event the library accepted:
//   accepted <X-GitHub-Delivery> <X-GitHub-Event> <payload's spec.id or ->
// The middleware itself answers everything else (400 for missing headers or
// a signature that does not match, 415 for a wrong content type).
// Exit 2 on usage errors, 3 when the library is missing (install.sh).

import { createServer } from "node:http";

let octokit;
try {
  octokit = await import("@octokit/webhooks");
} catch (error) {
  console.error(`github_receiver.mjs: ${error.message}: run tests/verifiers/install.sh`);
  process.exit(3);
}
if (process.argv[2] === "--self-check") process.exit(0);

const secret = process.env.WEBHOOK_SECRET;
if (!secret) {
  console.error("github_receiver.mjs: set WEBHOOK_SECRET");
  process.exit(2);
}

const webhooks = new octokit.Webhooks({ secret });
webhooks.onAny(({ id, name, payload }) => {
  console.log(`accepted ${id} ${name} ${payload?.spec?.id ?? "-"}`);
});
webhooks.onError((error) => {
  console.error(`rejected: ${error.message}`);
});

const server = createServer(octokit.createNodeMiddleware(webhooks, { path: "/hook" }));
server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  console.error(`listening on http://127.0.0.1:${server.address().port}/hook`);
});
