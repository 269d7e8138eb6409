#!/usr/bin/env node
// Parses Teams messages with the `adaptivecards` library (Microsoft's
// Adaptive Cards SDK) the way a host does before rendering them.
//
// Usage: node adaptive_card.mjs BODY...     (each BODY a file with one message)
//        node adaptive_card.mjs --self-check
//
// Prints one line per BODY: `ok`, or `rejected: <reasons>` when the message
// is not a Teams card message or the library reports any parse or
// validation event (unknown element, bad property, unsupported version) or
// drops a body element. Exit 2 on usage errors, 3 when the library is
// missing (install.sh).

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

let AC;
try {
  // The package's ES build imports without file extensions (for bundlers);
  // its UMD bundle loads in Node as it is.
  AC = createRequire(import.meta.url)("adaptivecards/dist/adaptivecards.js");
} catch (error) {
  console.error(`adaptive_card.mjs: ${error.message}: run tests/verifiers/install.sh`);
  process.exit(3);
}

function check(message) {
  const reasons = [];
  if (message.type !== "message") reasons.push(`type is ${JSON.stringify(message.type)}`);
  const attachments = Array.isArray(message.attachments) ? message.attachments : [];
  if (attachments.length === 0) reasons.push("no attachments");
  for (const attachment of attachments) {
    if (attachment.contentType !== "application/vnd.microsoft.card.adaptive") {
      reasons.push(`contentType is ${JSON.stringify(attachment.contentType)}`);
      continue;
    }
    const json = attachment.content;
    const card = new AC.AdaptiveCard();
    const context = new AC.SerializationContext();
    card.parse(json, context);
    for (let i = 0; i < context.eventCount; i++) {
      reasons.push(`parse: ${context.getEventAt(i).message}`);
    }
    for (const event of card.validateProperties().validationEvents) {
      reasons.push(`validate: ${event.message}`);
    }
    const want = Array.isArray(json?.body) ? json.body.length : 0;
    if (card.getItemCount() !== want) {
      reasons.push(`parsed ${card.getItemCount()} of ${want} body elements`);
    }
    if (!card.version || card.version.toString() !== json?.version) {
      reasons.push(`version ${json?.version} not understood`);
    }
  }
  return reasons;
}

const args = process.argv.slice(2);
if (args.length === 1 && args[0] === "--self-check") process.exit(0);
if (args.length === 0) {
  console.error("usage: node adaptive_card.mjs BODY...");
  process.exit(2);
}
for (const path of args) {
  let reasons;
  try {
    reasons = check(JSON.parse(readFileSync(path, "utf8")));
  } catch (error) {
    reasons = [`${error.name}: ${error.message}`];
  }
  console.log(reasons.length === 0 ? "ok" : `rejected: ${reasons.join("; ")}`);
}
